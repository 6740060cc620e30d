<#
.SYNOPSIS
    Installs the Microsoft Azure Recovery Services (MARS) agent on a Hyper-V host, once.

.DESCRIPTION
    Run on a Hyper-V host, as an administrator, when the site file asks for the agent: it is
    needed on every host when Azure is the replication target, and not used when a secondary
    VMM site is (Hyper-V Replica moves the data there). Installs silently with
    MARSAgentInstaller.exe /q /nu (/nu: no Microsoft Update opt-in prompt); does nothing when
    the agent is already installed.

    Writes exactly one JSON document (ConvertTo-Json -Compress) to the output stream:
    {host, installed, already_installed, version}; RecoveryServicesAgentInstallation in
    plugins/site_recovery/scripts.py reads it.

.PARAMETER InstallerPath
    MARSAgentInstaller.exe: a local or UNC path, or an https URL to download it from.

.NOTES
    Exit code 3010 (restart required) counts as success and is reported as a warning.
#>
# asr-lab-twin: Install-RecoveryServicesAgent
#Requires -Version 5.1
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^(https://\S+|[a-z]:\\.+|\\\\\S.*)$')]
    [string]$InstallerPath
)

$ErrorActionPreference = 'Stop'
if (-not $PSBoundParameters.ContainsKey('Verbose')) { $VerbosePreference = 'Continue' }
$RestartRequired = 3010

function Get-AgentVersion {
    $entry = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*' -ErrorAction SilentlyContinue |
        Where-Object { $_.DisplayName -like '*Azure Recovery Services Agent*' } | Select-Object -First 1
    if ($entry) { return [string]$entry.DisplayVersion }
    return $null
}

$null = Get-Service -Name vmms
$hostName = [System.Net.Dns]::GetHostEntry([string]$env:COMPUTERNAME).HostName.ToLowerInvariant()
$version = Get-AgentVersion
if ($version) {
    Write-Information "The Microsoft Azure Recovery Services Agent $version is already installed on $hostName."
    [ordered]@{ host = $hostName; installed = $false; already_installed = $true; version = $version } |
        ConvertTo-Json -Depth 2 -Compress
    return
}

$work = Join-Path -Path $env:TEMP -ChildPath "MarsAgent-$([guid]::NewGuid())"
$null = New-Item -ItemType Directory -Path $work
try {
    $installer = Join-Path -Path $work -ChildPath 'MARSAgentInstaller.exe'
    if ($InstallerPath -like 'https://*') {
        Write-Verbose "Downloading the agent installer from $InstallerPath..."
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
        try { Invoke-WebRequest -Uri $InstallerPath -OutFile $installer -UseBasicParsing } catch {
            throw "Could not download the agent installer from ${InstallerPath}: $($_.Exception.Message)"
        }
    } elseif (Test-Path -LiteralPath $InstallerPath -PathType Leaf) {
        Copy-Item -LiteralPath $InstallerPath -Destination $installer
    } else {
        throw "Cannot find path '$InstallerPath' because it does not exist."
    }
    Write-Verbose 'Installing the Microsoft Azure Recovery Services Agent (MARSAgentInstaller.exe /q /nu)...'
    $process = Start-Process -FilePath $installer -ArgumentList '/q /nu' -Wait -PassThru -NoNewWindow
    if ($process.ExitCode -eq $RestartRequired) {
        Write-Warning "The agent is installed; $hostName must be restarted to finish the installation."
    } elseif ($process.ExitCode -ne 0) {
        throw "MARSAgentInstaller.exe /q /nu failed on $hostName (exit code $($process.ExitCode))."
    }
} finally {
    Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
}

$version = Get-AgentVersion
if (-not $version) { throw "MARSAgentInstaller.exe finished but the agent is not listed as installed on $hostName." }
Write-Information "Installed the Microsoft Azure Recovery Services Agent $version on $hostName."
[ordered]@{ host = $hostName; installed = $true; already_installed = $false; version = $version } |
    ConvertTo-Json -Depth 2 -Compress
