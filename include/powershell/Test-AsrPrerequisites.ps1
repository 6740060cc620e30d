<#
.SYNOPSIS
    Checks the documented prerequisites of VMM-to-VMM replication with Azure Site Recovery on
    one VMM server, and reports each check with pass or fail and the reason.

.DESCRIPTION
    Run on a System Center VMM server. Checks, in order:
      VmmVersion           VMM 2012 R2 with Update Rollup 5 or later, 2016, 1801/1807 or 2019.
      CloudsPresent        the named clouds exist (or the server has at least one cloud).
      CloudsHaveHosts      every cloud's host groups hold Hyper-V hosts.
      HostOsVersion        the hosts run Windows Server 2012 R2 or later with Hyper-V.
      ReplicationPort      Hyper-V Replica answers on the replication port of every host
                           (listener and firewall rule; see Initialize-HyperVReplicaHost).
      Authentication       Kerberos: the hosts are in this server's domain. Certificate: each
                           host has a certificate set for Hyper-V Replica.
      ProviderRegistration the ASR Provider is not registered to another vault.

    A failed check is data, not an error: the script only throws when it cannot run at all.
    Writes exactly one JSON document (ConvertTo-Json -Compress) to the output stream
    ({server, checks: [{name, passed, reason}], passed}); PrerequisiteReport in
    plugins/site_recovery/scripts.py reads it.

.PARAMETER ReplicationPort
    The port the replication policy uses (8083 in the documentation's examples).

.PARAMETER Authentication
    Kerberos or Certificate, as in the replication policy.

.PARAMETER VaultId
    ARM id of the Recovery Services vault this server should be registered to, if any.

.PARAMETER VaultName
    Name of that vault, when its id is not at hand.

.PARAMETER CloudName
    The clouds the site file pairs. All clouds of the server when left out.

.NOTES
    The certificate check reads Get-VMReplicationServer -ComputerName <host>: from a remote
    session that needs Kerberos delegation to the hosts. The provider's registration is read
    from HKLM:\SOFTWARE\Microsoft\Azure Site Recovery\Registration.
#>
# asr-lab-twin: Test-AsrPrerequisites
#Requires -Version 5.1
[CmdletBinding()]
param(
    [ValidateRange(1, 65535)]
    [int]$ReplicationPort = 8083,

    [ValidateSet('Kerberos', 'Certificate')]
    [string]$Authentication = 'Kerberos',

    [ValidatePattern('^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.RecoveryServices/vaults/[^/]+$')]
    [string]$VaultId,

    [ValidateNotNullOrEmpty()]
    [string]$VaultName,

    [Alias('CloudNames')]
    [ValidateNotNullOrEmpty()]
    [string[]]$CloudName
)

$ErrorActionPreference = 'Stop'
if (-not $PSBoundParameters.ContainsKey('Verbose')) { $VerbosePreference = 'Continue' }
$SupportedVmm = 'VMM 2012 R2 with Update Rollup 5 or later (3.2.8002.0), 2016, 1801, 1807 or 2019'
$MinimumHostOs = [version]'6.3.9600'
$TcpTimeoutMilliseconds = 3000

function New-Check {
    param([string]$Name, [bool]$Passed, [string]$Reason)
    $level = if ($Passed) { 'Verbose' } else { 'Warning' }
    & "Write-$level" "${Name}: $Reason"
    return [ordered]@{ name = $Name; passed = $Passed; reason = $Reason }
}

function Test-VmmVersionSupported {
    param([version]$Version)
    switch ($Version.Major) {
        3 { return $Version -ge [version]'3.2.8002' }
        4 { return $true }
        10 { return $Version.Minor -eq 19 }
        default { return $false }
    }
}

function Test-TcpPort {
    # What Test-NetConnection -Port does, with a short timeout: many hosts are tested in a row.
    param([string]$ComputerName, [int]$Port)
    $client = New-Object -TypeName System.Net.Sockets.TcpClient
    try {
        $pending = $client.BeginConnect($ComputerName, $Port, $null, $null)
        if (-not $pending.AsyncWaitHandle.WaitOne($TcpTimeoutMilliseconds)) { return $false }
        $client.EndConnect($pending)
        return $true
    } catch {
        return $false
    } finally {
        $client.Close()
    }
}

function Get-RegisteredVaultId {
    $key = 'HKLM:\SOFTWARE\Microsoft\Azure Site Recovery\Registration'
    $values = Get-ItemProperty -Path $key -ErrorAction SilentlyContinue
    if (-not $values -or -not $values.ResourceName) { return $null }
    return "/subscriptions/$($values.SubscriptionId)/resourceGroups/$($values.ResourceGroupName)" +
        "/providers/Microsoft.RecoveryServices/vaults/$($values.ResourceName)"
}

Import-Module -Name virtualmachinemanager -Verbose:$false
$vmmServer = Get-SCVMMServer -ComputerName localhost
$serverName = if ($vmmServer.FQDN) { [string]$vmmServer.FQDN } else { [string]$vmmServer.Name }
$checks = New-Object -TypeName System.Collections.Generic.List[object]

$version = [string]$vmmServer.ProductVersion
if (Test-VmmVersionSupported -Version $version) {
    $checks.Add((New-Check 'VmmVersion' $true "VMM $version is supported."))
} else {
    $checks.Add((New-Check 'VmmVersion' $false "VMM $version is not supported; VMM-to-VMM replication needs $SupportedVmm."))
}

$clouds = @(Get-SCCloud -VMMServer $vmmServer)
if ($CloudName) {
    $missing = @($CloudName | Where-Object { $name = $_; -not ($clouds | Where-Object { $_.Name -eq $name }) })
    $clouds = @($clouds | Where-Object { $CloudName -contains $_.Name })
    $reason = if ($missing) { "No cloud named $($missing -join ', ') on $serverName." }
    else { "Found cloud(s) $(($clouds | ForEach-Object Name) -join ', ')." }
    $checks.Add((New-Check 'CloudsPresent' ($missing.Count -eq 0) $reason))
} elseif ($clouds) {
    $checks.Add((New-Check 'CloudsPresent' $true "Found cloud(s) $(($clouds | ForEach-Object Name) -join ', ')."))
} else {
    $checks.Add((New-Check 'CloudsPresent' $false "$serverName has no cloud."))
}

$allHosts = @(Get-SCVMHost -VMMServer $vmmServer)
$hosts = New-Object -TypeName System.Collections.Generic.List[object]
$empty = New-Object -TypeName System.Collections.Generic.List[string]
foreach ($cloud in $clouds) {
    $paths = @(@($cloud.HostGroup) | ForEach-Object { [string]$_.Path })
    $inCloud = @($allHosts | Where-Object {
            $path = [string]$_.VMHostGroup.Path
            @($paths | Where-Object { $path -eq $_ -or $path.StartsWith("$_\") }).Count -gt 0
        })
    if (-not $inCloud) { $empty.Add([string]$cloud.Name) }
    foreach ($vmHost in $inCloud) { if (-not $hosts.Contains($vmHost)) { $hosts.Add($vmHost) } }
}
$reason = if ($empty.Count) { "No Hyper-V host in the host groups of cloud(s) $($empty -join ', ')." }
elseif ($clouds) { 'Every cloud holds Hyper-V hosts.' } else { 'No cloud to check.' }
$checks.Add((New-Check 'CloudsHaveHosts' ($clouds.Count -gt 0 -and $empty.Count -eq 0) $reason))

$hostNames = @($hosts | ForEach-Object { if ($_.FQDN) { [string]$_.FQDN } else { [string]$_.Name } })
$old = @(foreach ($vmHost in $hosts) {
        $osVersion = if ($vmHost.OperatingSystemVersion) { $vmHost.OperatingSystemVersion } else { $vmHost.OperatingSystem.Version }
        $parsed = $null
        if (-not [version]::TryParse([string]$osVersion, [ref]$parsed) -or $parsed -lt $MinimumHostOs -or
            [string]$vmHost.VirtualizationPlatform -ne 'HyperV') {
            "$($vmHost.FQDN) ($osVersion)"
        }
    })
$reason = if ($old) { "Hosts older than Windows Server 2012 R2: $($old -join ', ')." }
elseif ($hosts.Count) { "All $($hosts.Count) host(s) run Windows Server 2012 R2 or later with Hyper-V." }
else { 'No host to check.' }
$checks.Add((New-Check 'HostOsVersion' ($hosts.Count -gt 0 -and $old.Count -eq 0) $reason))

$closed = @(foreach ($name in $hostNames) {
        Write-Verbose "Testing TCP $ReplicationPort on $name."
        if (-not (Test-TcpPort -ComputerName $name -Port $ReplicationPort)) { $name }
    })
$reason = if ($closed) {
    "TCP $ReplicationPort did not answer on $($closed -join ', '): Hyper-V Replica must listen there with " +
    "$Authentication authentication and the firewall must allow it (Initialize-HyperVReplicaHost)."
} elseif ($hostNames) { "Hyper-V Replica answers on TCP $ReplicationPort on all $($hostNames.Count) host(s)." }
else { 'No host to check.' }
$checks.Add((New-Check 'ReplicationPort' ($hostNames.Count -gt 0 -and $closed.Count -eq 0) $reason))

if ($Authentication -eq 'Kerberos') {
    $domain = (Get-CimInstance -ClassName Win32_ComputerSystem -Verbose:$false).Domain
    $foreign = @($hostNames | Where-Object { -not $_.EndsWith(".$domain", [StringComparison]::OrdinalIgnoreCase) })
    $reason = if ($foreign) { "Not in domain ${domain}: $($foreign -join ', ')." }
    else { "All hosts are in domain $domain; Kerberos authentication is possible." }
    $checks.Add((New-Check 'Authentication' ($foreign.Count -eq 0) $reason))
} else {
    $without = @(foreach ($name in $hostNames) {
            try {
                if (-not (Get-VMReplicationServer -ComputerName $name).CertificateThumbprint) { $name }
            } catch {
                "$name (could not read its replica settings: $($_.Exception.Message))"
            }
        })
    $reason = if ($without) { "No certificate is set for Hyper-V Replica on $($without -join ', ')." }
    else { 'Every host has a certificate set for Hyper-V Replica.' }
    $checks.Add((New-Check 'Authentication' ($hostNames.Count -gt 0 -and $without.Count -eq 0) $reason))
}

$registered = Get-RegisteredVaultId
if (-not $registered) {
    $checks.Add((New-Check 'ProviderRegistration' $true 'The ASR Provider is not registered to any vault yet.'))
} else {
    $registeredName = ($registered -split '/')[-1]
    if ($VaultId) { $same = $registered -eq $VaultId.TrimEnd('/') }
    elseif ($VaultName) { $same = $registeredName -eq $VaultName }
    else { $same = $true }
    $reason = if ($same) { "The ASR Provider is registered to vault '$registeredName'." }
    else { "The ASR Provider is registered to another vault, '$registeredName'; unregister it first." }
    $checks.Add((New-Check 'ProviderRegistration' $same $reason))
}

$passed = @($checks | Where-Object { $_.passed }).Count
Write-Information "$passed of $($checks.Count) prerequisites met on $serverName."
[ordered]@{
    server = $serverName
    checks = @($checks)
    passed = ($passed -eq $checks.Count)
} | ConvertTo-Json -Depth 5 -Compress
