<#
.SYNOPSIS
    Makes a Hyper-V host a Hyper-V Replica server for Azure Site Recovery (step 4): replica
    server settings and an inbound firewall rule for the replication port.

.DESCRIPTION
    Run on a Hyper-V host of the recovery site (and of the primary site, so that replication
    can be reversed after a failover). Compares each setting first and changes only what
    differs, so a second run changes nothing:
      - Hyper-V Replica enabled as a replica server (Set-VMReplicationServer);
      - the authentication type (when the host already accepted the other type, both are kept);
      - the listener port of that authentication type, and for Certificate the certificate;
      - who may replicate here: any authenticated server with a default storage location, or
        one primary server (an authorization entry with its own storage location);
      - an enabled inbound firewall rule for the port: the built-in "Hyper-V Replica HTTP
        Listener (TCP-In)" (port 80) or HTTPS rule (port 443) when the port is theirs, else a
        rule of its own for the port.

    Writes exactly one JSON document (ConvertTo-Json -Compress) to the output stream:
    {host, changed: [...], already: [...], settings: {...}}; ReplicaHostConfiguration in
    plugins/site_recovery/scripts.py reads it.

.PARAMETER ReplicationPort
    The port of the replication policy; 8083 for Kerberos and 443 for Certificate by default.

.PARAMETER Authentication
    Kerberos (HTTP) or Certificate (HTTPS), as in the replication policy.

.PARAMETER StoragePath
    Local or cluster shared volume folder for replica VMs, e.g. C:\ClusterStorage\Replica01.

.PARAMETER AllowedPrimaryServer
    '*' for any authenticated server (the default), or the FQDN (or *.domain) of the only
    primary server allowed to replicate here.

.PARAMETER CertificateThumbprint
    For Certificate: the Server Authentication certificate to use. By default the newest valid
    one in Cert:\LocalMachine\My issued to this host's FQDN.

.NOTES
    On a failover cluster the replica settings belong to the Hyper-V Replica Broker role, which
    this script does not configure.
#>
# asr-lab-twin: Initialize-HyperVReplicaHost
#Requires -Version 5.1
[CmdletBinding()]
param(
    [ValidateRange(1, 65535)]
    [int]$ReplicationPort,

    [ValidateSet('Kerberos', 'Certificate')]
    [string]$Authentication = 'Kerberos',

    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[a-z]:\\')]
    [string]$StoragePath,

    [ValidatePattern('^(\*|(\*\.)?[a-z0-9][a-z0-9.-]*)$')]
    [string]$AllowedPrimaryServer = '*',

    [ValidatePattern('^[0-9a-f]{40}$')]
    [string]$CertificateThumbprint
)

$ErrorActionPreference = 'Stop'
if (-not $PSBoundParameters.ContainsKey('Verbose')) { $VerbosePreference = 'Continue' }
Import-Module -Name 'Hyper-V', 'NetSecurity' -Verbose:$false

if (-not $PSBoundParameters.ContainsKey('ReplicationPort')) {
    $ReplicationPort = if ($Authentication -eq 'Kerberos') { 8083 } else { 443 }
}
$StoragePath = $StoragePath.TrimEnd('\')
$hostName = [System.Net.Dns]::GetHostEntry([string]$env:COMPUTERNAME).HostName.ToLowerInvariant()
$changed = New-Object -TypeName System.Collections.Generic.List[string]
$already = New-Object -TypeName System.Collections.Generic.List[string]

function Compare-Setting {
    # Files a setting under 'already' or 'changed'; returns whether it must be changed.
    param([string]$Setting, [bool]$IsSet)
    if ($IsSet) { $already.Add($Setting); return $false }
    $changed.Add($Setting)
    Write-Verbose "Setting $Setting."
    return $true
}

$thumbprint = $null
if ($Authentication -eq 'Certificate') {
    if ($CertificateThumbprint) {
        $certificate = Get-Item -Path "Cert:\LocalMachine\My\$CertificateThumbprint" -ErrorAction SilentlyContinue
        if (-not $certificate) { throw "Certificate $($CertificateThumbprint.ToUpper()) is not in Cert:\LocalMachine\My on $hostName." }
    } else {
        $certificate = Get-ChildItem -Path Cert:\LocalMachine\My | Where-Object {
            $_.HasPrivateKey -and $_.NotAfter -gt (Get-Date) -and
            ($_.EnhancedKeyUsageList.ObjectId -contains '1.3.6.1.5.5.7.3.1') -and ($_.DnsNameList.Unicode -contains $hostName)
        } | Sort-Object -Property NotAfter -Descending | Select-Object -First 1
        if (-not $certificate) {
            throw "No certificate for Server Authentication issued to $hostName in Cert:\LocalMachine\My; enroll one or pass -CertificateThumbprint."
        }
    }
    $thumbprint = $certificate.Thumbprint.ToUpper()
}

$replica = Get-VMReplicationServer
$currentAuth = [string]$replica.AllowedAuthenticationType
$settings = @{}
if (Compare-Setting 'replica server enabled' ([bool]$replica.ReplicationEnabled)) { $settings.ReplicationEnabled = $true }
$wantedAuth = $Authentication
if ($replica.ReplicationEnabled -and $currentAuth -notin @($Authentication, 'CertificateAndKerberos')) {
    $wantedAuth = 'CertificateAndKerberos'  # keep the other kind working for replication already set up
}
if (Compare-Setting "authentication $wantedAuth" ($currentAuth -in @($wantedAuth, 'CertificateAndKerberos'))) {
    $settings.AllowedAuthenticationType = $wantedAuth
}
if ($Authentication -eq 'Kerberos') {
    if (Compare-Setting "Kerberos port $ReplicationPort" ([int]$replica.IntegratedAuthenticationPort -eq $ReplicationPort)) {
        $settings.KerberosAuthenticationPort = $ReplicationPort
    }
} else {
    if (Compare-Setting "Certificate port $ReplicationPort" ([int]$replica.CertificateAuthenticationPort -eq $ReplicationPort)) {
        $settings.CertificateAuthenticationPort = $ReplicationPort
    }
    if (Compare-Setting "certificate $thumbprint" ([string]$replica.CertificateThumbprint -eq $thumbprint)) {
        $settings.CertificateThumbprint = $thumbprint
    }
}

$entry, $updateEntry = $null, $false
if ($AllowedPrimaryServer -eq '*') {
    $anyServer = Compare-Setting 'replication allowed from any server' ([bool]$replica.ReplicationAllowedFromAnyServer)
    $storage = Compare-Setting "default storage location $StoragePath" (([string]$replica.DefaultStorageLocation).TrimEnd('\') -eq $StoragePath)
    if ($anyServer -or $storage) {
        $settings.ReplicationAllowedFromAnyServer = $true
        $settings.DefaultStorageLocation = $StoragePath
    }
} else {
    try { $entry = Get-VMReplicationAuthorizationEntry -AllowedPrimaryServer $AllowedPrimaryServer } catch { $entry = $null }
    $entrySet = $entry -and ([string]$entry.ReplicaStorageLocation).TrimEnd('\') -eq $StoragePath -and
        -not $replica.ReplicationAllowedFromAnyServer
    if (Compare-Setting "replication allowed from $AllowedPrimaryServer to $StoragePath" $entrySet) {
        $updateEntry = $true
        if ($replica.ReplicationAllowedFromAnyServer) { $settings.ReplicationAllowedFromAnyServer = $false }
    }
}

if (-not (Test-Path -LiteralPath $StoragePath)) {
    $null = New-Item -ItemType Directory -Path $StoragePath
    Write-Verbose "Created the folder $StoragePath."
}
if ($settings.Count) { Set-VMReplicationServer @settings -Confirm:$false }
if ($updateEntry) {
    if ($entry) {
        Set-VMReplicationAuthorizationEntry -AllowedPrimaryServer $AllowedPrimaryServer -ReplicaStorageLocation $StoragePath
    } else {
        $null = New-VMReplicationAuthorizationEntry -AllowedPrimaryServer $AllowedPrimaryServer `
            -ReplicaStorageLocation $StoragePath -TrustGroup 'AzureSiteRecovery'
    }
}

$protocol, $builtInName, $builtInPort = if ($Authentication -eq 'Kerberos') {
    'HTTP', 'Hyper-V Replica HTTP Listener (TCP-In)', 80
} else { 'HTTPS', 'Hyper-V Replica HTTPS Listener (TCP-In)', 443 }
$ruleName = if ($ReplicationPort -eq $builtInPort) { $builtInName } else { "Hyper-V Replica $protocol Listener (TCP-In, port $ReplicationPort)" }
try { $rule = Get-NetFirewallRule -DisplayName $ruleName | Select-Object -First 1 } catch { $rule = $null }
$ruleOpen = $rule -and [string]$rule.Enabled -eq 'True' -and
    (@(($rule | Get-NetFirewallPortFilter).LocalPort) -contains [string]$ReplicationPort)
if (Compare-Setting "firewall rule '$ruleName'" $ruleOpen) {
    if ($rule) {
        Set-NetFirewallRule -DisplayName $ruleName -Enabled True -LocalPort $ReplicationPort
    } else {
        $null = New-NetFirewallRule -DisplayName $ruleName -Direction Inbound -Protocol TCP -LocalPort $ReplicationPort `
            -Action Allow -Profile Any -Description 'Hyper-V Replica listener for Azure Site Recovery replication.'
    }
}

if ($changed.Count) {
    Write-Information "${hostName}: changed $($changed.Count) setting(s), $($already.Count) already in place."
} else {
    Write-Information "$hostName is already a replica server for $Authentication on TCP $ReplicationPort; nothing changed."
}
$replica = Get-VMReplicationServer
$storageNow = ([string]$replica.DefaultStorageLocation).TrimEnd('\')
[ordered]@{
    host     = $hostName
    changed  = @($changed)
    already  = @($already)
    settings = [ordered]@{
        enabled                 = [bool]$replica.ReplicationEnabled
        authentication          = [string]$replica.AllowedAuthenticationType
        kerberos_port           = [int]$replica.IntegratedAuthenticationPort
        certificate_port        = [int]$replica.CertificateAuthenticationPort
        storage_path            = if ($storageNow) { $storageNow } else { $null }
        allowed_from_any_server = [bool]$replica.ReplicationAllowedFromAnyServer
        allowed_primary_servers = @(Get-VMReplicationAuthorizationEntry | ForEach-Object { [string]$_.AllowedPrimaryServer })
        open_firewall_rules     = @(Get-NetFirewallRule -DisplayName 'Hyper-V Replica*' -ErrorAction SilentlyContinue |
                Where-Object { [string]$_.Enabled -eq 'True' } | ForEach-Object { [string]$_.DisplayName })
    }
} | ConvertTo-Json -Depth 5 -Compress
