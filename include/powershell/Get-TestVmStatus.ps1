<#
.SYNOPSIS
    Reports whether a test failover VM exists on this VMM server, is running, answers its
    Hyper-V heartbeat, and which IP addresses it has (DR drills, step 10).

.DESCRIPTION
    Run on the recovery site's VMM server while a test failover is active. A test failover
    creates a VM named "<replicated VM> - Test"; the drill checks it before cleaning up.
    The state comes from VMM (VirtualMachineState: Running, PowerOff, ...), the heartbeat from
    the VM's Heartbeat integration service on its host (OK, NoContact, LostCommunication, ...),
    the IP addresses from VMM (reported by the guest through integration services; IPv6
    link-local addresses left out). A VM that does not exist is reported with exists = false;
    that is an answer, not an error.

    Writes exactly one JSON document (ConvertTo-Json -Compress) to the output stream:
    {vm_name, exists, vm_id, state, heartbeat, ip_addresses, host}; TestVmStatus in
    plugins/site_recovery/scripts.py reads it.

.PARAMETER VmName
    The test VM's name, e.g. "APP-ERP-01 - Test".

.PARAMETER ProtectedItemName
    The replicated VM's name as Site Recovery shows it; the test VM is "<name> - Test".

.NOTES
    The heartbeat is read with Get-VM -ComputerName <host>: from a remote session that needs
    Kerberos delegation to the hosts; without it the heartbeat is reported as Unknown, with a
    warning.
#>
# asr-lab-twin: Get-TestVmStatus
#Requires -Version 5.1
[CmdletBinding(DefaultParameterSetName = 'ByVmName')]
param(
    [Parameter(Mandatory = $true, ParameterSetName = 'ByVmName')]
    [ValidateNotNullOrEmpty()]
    [string]$VmName,

    [Parameter(Mandatory = $true, ParameterSetName = 'ByProtectedItem')]
    [ValidateNotNullOrEmpty()]
    [string]$ProtectedItemName
)

$ErrorActionPreference = 'Stop'
if (-not $PSBoundParameters.ContainsKey('Verbose')) { $VerbosePreference = 'Continue' }
$TestSuffix = ' - Test'
if ($PSCmdlet.ParameterSetName -eq 'ByProtectedItem') { $VmName = "$ProtectedItemName$TestSuffix" }

function Get-Heartbeat {
    param([object]$Vm)
    if ([string]$Vm.VirtualMachineState -ne 'Running') { return 'NoContact' }
    try {
        $service = Get-VM -ComputerName ([string]$Vm.HostName) -Id $Vm.VMId |
            Get-VMIntegrationService -Name 'Heartbeat'
    } catch {
        Write-Warning "Could not read the heartbeat of '$($Vm.Name)' from $($Vm.HostName): $($_.Exception.Message)"
        return 'Unknown'
    }
    if (-not $service.Enabled) { return 'Disabled' }
    $status = [string]$service.PrimaryOperationalStatus
    if (-not $status) { return 'NoContact' }
    if ($status -eq 'Ok') { return 'OK' }
    return $status
}

Import-Module -Name virtualmachinemanager -Verbose:$false
$vmmServer = Get-SCVMMServer -ComputerName localhost
$serverName = if ($vmmServer.FQDN) { [string]$vmmServer.FQDN } else { [string]$vmmServer.Name }
$vms = @(Get-SCVirtualMachine -VMMServer $vmmServer -Name $VmName)
if (-not $vms) {
    Write-Information "No virtual machine named '$VmName' on $serverName."
    [ordered]@{
        vm_name = $VmName; exists = $false; vm_id = $null; state = $null; heartbeat = $null
        ip_addresses = @(); host = $null
    } | ConvertTo-Json -Depth 3 -Compress
    return
}
if ($vms.Count -gt 1) {
    Write-Warning "$($vms.Count) virtual machines are named '$VmName'; reporting the first ($($vms[0].ID))."
}

$vm = Read-SCVirtualMachine -VM $vms[0]  # refresh state and guest addresses from the host
Write-Verbose "'$VmName' is on $($vm.HostName); reading its heartbeat from the host."
$state = [string]$vm.VirtualMachineState
$heartbeat = Get-Heartbeat -Vm $vm
$addresses = @()
if ($state -eq 'Running') {
    $addresses = @(foreach ($adapter in @($vm.VirtualNetworkAdapters)) {
            @($adapter.IPv4Addresses) + @($adapter.IPv6Addresses) | Where-Object { $_ -and $_ -notlike 'fe80:*' } |
                ForEach-Object { [string]$_ }
        })
}
Write-Information "'$VmName': $state, heartbeat $heartbeat, IP $(if ($addresses) { $addresses -join ', ' } else { 'none' })."
[ordered]@{
    vm_name      = [string]$vm.Name
    exists       = $true
    vm_id        = [string]$vm.ID
    state        = $state
    heartbeat    = $heartbeat
    ip_addresses = $addresses
    host         = [string]$vm.HostName
} | ConvertTo-Json -Depth 3 -Compress
