<#
.SYNOPSIS
    Installs the Azure Site Recovery Provider on a VMM server and registers the server with a
    Recovery Services vault (step 6).

.DESCRIPTION
    Run on a System Center VMM server, as an administrator. In order:
      1. Reads which vault the vault credentials name.
      2. Stops when the server is already registered: to the same vault there is nothing to do;
         to another vault it fails, since a server belongs to one vault at a time.
      3. Installs the provider when it is missing: AzureSiteRecoveryProvider.exe /x:<folder> /q,
         SetupDr.exe /i, then waits (bounded) for the DRAdapter registry key.
      4. Writes the credentials to a temporary file in a folder only SYSTEM and Administrators
         can read, and registers: DRConfigurator.exe /r /Credentials <file> /vmmfriendlyname
         <name> /startvmmservice. The folder is deleted afterwards, whatever happened.
    Installing the provider stops and restarts the VMM service. A DRConfigurator failure ends
    the script with DRConfigurator's own message and exit code.

    Writes exactly one JSON document (ConvertTo-Json -Compress) to the output stream:
    {server, installed, registered, already_registered, vault_id, friendly_name,
    provider_version}; ProviderRegistration in plugins/site_recovery/scripts.py reads it.

.PARAMETER VaultCredentials
    The content of the vault credentials file (XML), as a SecureString. It never reaches any
    output stream.

.PARAMETER InstallerPath
    AzureSiteRecoveryProvider.exe: a local or UNC path, or an https URL to download it from.

.PARAMETER FriendlyName
    The name the server gets in the vault; its FQDN by default.

.PARAMETER ProxyAddress
    http(s)://host:port of the proxy the provider must use to reach Azure, if any.

.NOTES
    The vault the provider is registered to is read from
    HKLM:\SOFTWARE\Microsoft\Azure Site Recovery\Registration. Logs of the provider's setup and
    of DRConfigurator are in %ProgramData%\ASRLogs.
#>
# asr-lab-twin: Install-AsrProvider
#Requires -Version 5.1
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNull()]
    [System.Security.SecureString]$VaultCredentials,

    [Parameter(Mandatory = $true)]
    [ValidatePattern('^(https://\S+|[a-z]:\\.+|\\\\\S.*)$')]
    [string]$InstallerPath,

    [ValidatePattern('^[\w.-]{1,64}$')]
    [string]$FriendlyName,

    [ValidatePattern('^https?://[^\s/:]+(:\d{1,5})?/?$')]
    [string]$ProxyAddress
)

$ErrorActionPreference = 'Stop'
if (-not $PSBoundParameters.ContainsKey('Verbose')) { $VerbosePreference = 'Continue' }
$VmmKey = 'HKLM:\SOFTWARE\Microsoft\Microsoft System Center Virtual Machine Manager Server'
$DrAdapterKey = "$VmmKey\DRAdapter"
$RegistrationKey = 'HKLM:\SOFTWARE\Microsoft\Azure Site Recovery\Registration'
$DrAdapterWaitSeconds = 600
$DownloadAgain = 'Download a new vault credentials file from the vault and retry.'

function Get-ProviderVersion {
    $entry = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*' -ErrorAction SilentlyContinue |
        Where-Object { $_.DisplayName -like '*Azure Site Recovery Provider*' } | Select-Object -First 1
    if ($entry) { return [string]$entry.DisplayVersion }
    return $null
}

function Get-Registration {
    $values = Get-ItemProperty -Path $RegistrationKey -ErrorAction SilentlyContinue
    if (-not $values -or -not $values.ResourceName) { return $null }
    return [pscustomobject]@{
        VaultId      = "/subscriptions/$($values.SubscriptionId)/resourceGroups/$($values.ResourceGroupName)" +
            "/providers/Microsoft.RecoveryServices/vaults/$($values.ResourceName)"
        FriendlyName = [string]$values.FriendlyName
    }
}

function Read-VaultCredentials {
    # Only the vault's coordinates are read here; DRConfigurator checks the rest.
    param([string]$Document)
    $xml = New-Object -TypeName System.Xml.XmlDocument
    $xml.XmlResolver = $null
    try { $xml.LoadXml($Document) } catch {
        throw "The vault credentials are not a valid vault credentials file (not XML). $DownloadAgain"
    }
    $fields = @{}
    foreach ($name in 'SubscriptionId', 'ResourceGroup', 'ResourceName') {
        $node = $xml.DocumentElement.SelectSingleNode("//*[local-name()='$name']")
        $fields[$name] = if ($node) { $node.InnerText.Trim() } else { '' }
    }
    if ($xml.DocumentElement.LocalName -ne 'RSVaultAsrCreds' -or @($fields.Values | Where-Object { -not $_ }).Count -gt 0) {
        throw ('The vault credentials are not a valid vault credentials file (no SubscriptionId, ResourceGroup and ' +
            "ResourceName under VaultDetails). $DownloadAgain")
    }
    return [pscustomobject]@{
        Name = $fields.ResourceName; ResourceGroup = $fields.ResourceGroup
        Id   = "/subscriptions/$($fields.SubscriptionId)/resourceGroups/$($fields.ResourceGroup)" +
            "/providers/Microsoft.RecoveryServices/vaults/$($fields.ResourceName)"
    }
}

function Invoke-Installer {
    # Runs a setup program, keeps its console output off the output stream, returns exit code and message.
    param([string]$FilePath, [string]$ArgumentList)
    $log = [IO.Path]::GetTempFileName()
    try {
        $process = Start-Process -FilePath $FilePath -ArgumentList $ArgumentList -Wait -PassThru -NoNewWindow `
            -RedirectStandardOutput $log -RedirectStandardError "$log.err"
        $lines = @(Get-Content -LiteralPath $log, "$log.err" -ErrorAction SilentlyContinue | Where-Object { $_.Trim() })
        return [pscustomobject]@{ ExitCode = $process.ExitCode; Message = (@($lines | Select-Object -Last 3) -join ' ').Trim() }
    } finally {
        Remove-Item -LiteralPath $log, "$log.err" -Force -ErrorAction SilentlyContinue
    }
}

function Install-Provider {
    param([string]$Source, [string]$Proxy)
    $work = Join-Path -Path $env:TEMP -ChildPath "AsrProvider-$([guid]::NewGuid())"
    $null = New-Item -ItemType Directory -Path $work
    try {
        $installer = Join-Path -Path $work -ChildPath 'AzureSiteRecoveryProvider.exe'
        if ($Source -like 'https://*') {
            Write-Verbose "Downloading the provider installer from $Source..."
            [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
            $download = @{ Uri = $Source; OutFile = $installer; UseBasicParsing = $true }
            if ($Proxy) { $download.Proxy = $Proxy }
            try { Invoke-WebRequest @download } catch {
                throw "Could not download the provider installer from ${Source}: $($_.Exception.Message)"
            }
        } elseif (Test-Path -LiteralPath $Source -PathType Leaf) {
            Copy-Item -LiteralPath $Source -Destination $installer
        } else {
            throw "Cannot find path '$Source' because it does not exist."
        }
        $extracted = Join-Path -Path $work -ChildPath 'extracted'
        Write-Verbose 'Extracting the provider (AzureSiteRecoveryProvider.exe /x:<folder> /q)...'
        $result = Invoke-Installer -FilePath $installer -ArgumentList "/x:`"$extracted`" /q"
        if ($result.ExitCode -ne 0) { throw "Extracting the provider failed (exit code $($result.ExitCode)): $($result.Message)" }
        Write-Verbose 'Installing the provider (SetupDr.exe /i)...'
        $result = Invoke-Installer -FilePath (Join-Path -Path $extracted -ChildPath 'SetupDr.exe') -ArgumentList '/i'
        if ($result.ExitCode -notin 0, 3010) {
            throw "SetupDr.exe /i failed (exit code $($result.ExitCode)): $($result.Message) See %ProgramData%\ASRLogs."
        }
        Write-Verbose 'Waiting for the DRAdapter registry key...'
        $deadline = (Get-Date).AddSeconds($DrAdapterWaitSeconds)
        while (-not (Test-Path -Path $DrAdapterKey)) {
            if ((Get-Date) -gt $deadline) {
                throw "The provider setup finished but $DrAdapterKey did not appear within $DrAdapterWaitSeconds s. See %ProgramData%\ASRLogs."
            }
            Start-Sleep -Seconds 10
        }
    } finally {
        Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
    }
}

function New-ProtectedFolder {
    # A folder only SYSTEM and the local Administrators can open: inheritance off, two rules.
    $folder = Join-Path -Path $env:ProgramData -ChildPath "AsrAutomation\$([guid]::NewGuid())"
    $null = New-Item -ItemType Directory -Path $folder -Force
    $acl = New-Object -TypeName System.Security.AccessControl.DirectorySecurity
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($sid in 'S-1-5-18', 'S-1-5-32-544') {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        $acl.AddAccessRule((New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList @(
                    $identity, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow')))
    }
    Set-Acl -LiteralPath $folder -AclObject $acl
    return $folder
}

$null = Get-Service -Name SCVMMService
$principal = New-Object -TypeName Security.Principal.WindowsPrincipal -ArgumentList ([Security.Principal.WindowsIdentity]::GetCurrent())
$serverName = [System.Net.Dns]::GetHostEntry([string]$env:COMPUTERNAME).HostName.ToLowerInvariant()
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "Install-AsrProvider must run as an administrator of $serverName."
}
if (-not $FriendlyName) { $FriendlyName = $serverName }

$bstr = [Runtime.InteropServices.Marshal]::SecureStringToBSTR($VaultCredentials)
try { $credentialsXml = [Runtime.InteropServices.Marshal]::PtrToStringBSTR($bstr) }
finally { [Runtime.InteropServices.Marshal]::ZeroFreeBSTR($bstr) }
$vault = Read-VaultCredentials -Document $credentialsXml
Write-Verbose "The vault credentials are for vault '$($vault.Name)' in resource group '$($vault.ResourceGroup)'."

$registration = Get-Registration
if ($registration) {
    if ($registration.VaultId -ne $vault.Id) {
        throw "This server is already registered to the vault '$(($registration.VaultId -split '/')[-1])'. Unregister it first."
    }
    Write-Information "$serverName is already registered to the vault '$($vault.Name)'; nothing to do."
    $name = if ($registration.FriendlyName) { $registration.FriendlyName } else { $serverName }
    [ordered]@{
        server = $serverName; installed = $false; registered = $false; already_registered = $true
        vault_id = $registration.VaultId; friendly_name = $name; provider_version = [string](Get-ProviderVersion)
    } | ConvertTo-Json -Depth 3 -Compress
    return
}

$installed = $false
$version = Get-ProviderVersion
if (-not $version -or -not (Test-Path -Path $DrAdapterKey)) {
    Install-Provider -Source $InstallerPath -Proxy $ProxyAddress
    $version = Get-ProviderVersion
    $installed = $true
    Write-Information "Installed the Azure Site Recovery Provider $version on $serverName."
} else {
    Write-Verbose "The Azure Site Recovery Provider $version is already installed."
}

$setup = Get-ItemProperty -Path "$VmmKey\Setup" -ErrorAction SilentlyContinue
$vmmBin = if ($setup -and $setup.InstallPath) { Join-Path -Path $setup.InstallPath -ChildPath 'bin' }
else { Join-Path -Path $env:SystemDrive -ChildPath 'Program Files\Microsoft System Center 2012 R2\Virtual Machine Manager\bin' }
$folder = New-ProtectedFolder
try {
    $credentialsFile = Join-Path -Path $folder -ChildPath "$($vault.Name).VaultCredentials"
    [IO.File]::WriteAllText($credentialsFile, $credentialsXml, (New-Object -TypeName Text.UTF8Encoding -ArgumentList $false))
    Write-Verbose 'Wrote the vault credentials to a temporary file readable by SYSTEM and Administrators only.'
    $arguments = "/r /Credentials `"$credentialsFile`" /vmmfriendlyname `"$FriendlyName`" /startvmmservice"
    if ($ProxyAddress) {
        $proxy = [uri]$ProxyAddress
        $arguments += " /proxyaddress `"$($proxy.Scheme)://$($proxy.Host)`" /proxyport $($proxy.Port)"
        Write-Verbose "Registering through the proxy $ProxyAddress."
    }
    Write-Verbose "Registering with the vault '$($vault.Name)' as '$FriendlyName' (DRConfigurator.exe /r)..."
    $result = Invoke-Installer -FilePath (Join-Path -Path $vmmBin -ChildPath 'DRConfigurator.exe') -ArgumentList $arguments
    if ($result.ExitCode -ne 0) {
        $message = $result.Message.Replace($credentialsXml, '***')
        throw "DRConfigurator.exe could not register $serverName with the vault '$($vault.Name)' (exit code $($result.ExitCode)): $message"
    }
} finally {
    Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Variable -Name credentialsXml -ErrorAction SilentlyContinue
    Write-Verbose 'Removed the temporary vault credentials file.'
}

Write-Information "Registered $serverName with the vault '$($vault.Name)'; the VMM service was restarted."
[ordered]@{
    server             = $serverName
    installed          = $installed
    registered         = $true
    already_registered = $false
    vault_id           = $vault.Id
    friendly_name      = $FriendlyName
    provider_version   = [string]$version
} | ConvertTo-Json -Depth 3 -Compress
