<#
.SYNOPSIS
    Reports what a VMM server manages, as Azure Site Recovery will see it: clouds, Hyper-V hosts,
    virtual machines and networks.

.DESCRIPTION
    Run on a System Center VMM server (2012 R2 or later). Lists the VMM version; each cloud with
    its host groups; the Hyper-V hosts of those host groups with their OS version, Hyper-V role
    and Hyper-V Replica server settings; the virtual machines of each cloud (id, name,
    generation, disks, network adapters and their VM networks, state); the VM networks and the
    logical networks.

    Writes exactly one JSON document (ConvertTo-Json -Compress) to the output stream and nothing
    else; progress goes to the verbose and information streams, problems to the warning stream.
    The document is read by VmmInventory in plugins/site_recovery/scripts.py.

.PARAMETER CloudName
    Only these clouds, their hosts and their VMs. All clouds when left out. A name that matches
    no cloud is reported as a warning.

.NOTES
    Hyper-V Replica settings are read with Get-VMReplicationServer -ComputerName <host>. From a
    remote session that is a second hop, which needs Kerberos delegation to the hosts
    (resource-based constrained delegation); without it a host's replica settings are reported
    as null, with a warning naming the host.
    Windows Server 2012 R2 needs WMF 5.1 (information stream).
#>
# asr-lab-twin: Get-VmmInventory
#Requires -Version 5.1
[CmdletBinding()]
param(
    [Parameter()]
    [Alias('CloudNames')]
    [ValidateNotNullOrEmpty()]
    [string[]]$CloudName
)

$ErrorActionPreference = 'Stop'
$BytesPerGiB = [math]::Pow(2, 30)
if (-not $PSBoundParameters.ContainsKey('Verbose')) { $VerbosePreference = 'Continue' }

function Get-OptionalProperty {
    # Properties that differ between VMM releases: the first one present wins.
    param([object]$InputObject, [string[]]$Name)
    foreach ($candidate in $Name) {
        if ($null -ne $InputObject -and $InputObject.PSObject.Properties[$candidate]) {
            return $InputObject.$candidate
        }
    }
    return $null
}

function Get-ReplicaServerSettings {
    param([string]$ComputerName)
    try {
        $replica = Get-VMReplicationServer -ComputerName $ComputerName -ErrorAction Stop
    } catch {
        Write-Warning "Could not read the Hyper-V Replica settings of ${ComputerName}: $($_.Exception.Message)"
        return $null
    }
    $storage = [string]$replica.DefaultStorageLocation
    return [ordered]@{
        enabled                 = [bool]$replica.ReplicationEnabled
        authentication          = [string]$replica.AllowedAuthenticationType
        kerberos_port           = [int]$replica.IntegratedAuthenticationPort
        certificate_port        = [int]$replica.CertificateAuthenticationPort
        storage_path            = if ($storage) { $storage } else { $null }
        allowed_from_any_server = [bool]$replica.ReplicationAllowedFromAnyServer
    }
}

function ConvertTo-DiskDocument {
    param([object]$Drive)
    $vhd = $Drive.VirtualHardDisk
    $passthrough = Get-OptionalProperty $Drive 'PassThroughDisk'
    if ($vhd) {
        $id, $name, $bytes = [string]$vhd.ID, [string]$vhd.Name, [double]$vhd.MaximumSize
    } else {
        $id, $name = [string]$Drive.ID, [string](Get-OptionalProperty $passthrough 'Name', 'DeviceID')
        $bytes = [double](Get-OptionalProperty $passthrough 'Capacity', 'Size')
    }
    return [ordered]@{
        id          = $id
        name        = $name
        size_gb     = [math]::Round($bytes / $BytesPerGiB, 2)
        bus         = [string]$Drive.BusType
        role        = if ([string]$Drive.VolumeType -match 'Boot|System') { 'OperatingSystem' } else { 'Data' }
        shared      = [bool](Get-OptionalProperty $Drive 'IsVHDShared', 'IsSharedDisk')
        passthrough = [bool]$passthrough
    }
}

function ConvertTo-VmDocument {
    param([object]$Vm, [string]$Cloud)
    $nics = @(foreach ($adapter in @($Vm.VirtualNetworkAdapters)) {
        [ordered]@{
            id           = [string]$adapter.ID
            mac          = [string]$adapter.MACAddress
            vm_network   = if ($adapter.VMNetwork) { [string]$adapter.VMNetwork.Name } else { $null }
            ip_addresses = @(@($adapter.IPv4Addresses) + @($adapter.IPv6Addresses) |
                    Where-Object { $_ -and $_ -notlike 'fe80:*' } | ForEach-Object { [string]$_ })
        }
    })
    return [ordered]@{
        id         = [string]$Vm.ID
        name       = [string]$Vm.Name
        cloud      = $Cloud
        host       = [string]$Vm.HostName
        generation = [int]$Vm.Generation
        state      = [string]$Vm.VirtualMachineState
        os         = [string]$Vm.OperatingSystem.Name
        cpu_count  = [int]$Vm.CPUCount
        memory_mb  = [int]$Vm.Memory
        disks      = @(foreach ($drive in @($Vm.VirtualDiskDrives)) { ConvertTo-DiskDocument -Drive $drive })
        nics       = $nics
    }
}

Import-Module -Name virtualmachinemanager -Verbose:$false
$vmmServer = Get-SCVMMServer -ComputerName localhost
$serverName = [string](Get-OptionalProperty $vmmServer 'FQDN', 'Name')
Write-Verbose "Connected to VMM server $serverName (version $($vmmServer.ProductVersion))."

$clouds = @(Get-SCCloud -VMMServer $vmmServer)
if ($CloudName) {
    foreach ($name in $CloudName) {
        if (-not ($clouds | Where-Object { $_.Name -eq $name })) { Write-Warning "No cloud named '$name' on $serverName." }
    }
    $clouds = @($clouds | Where-Object { $CloudName -contains $_.Name })
}
Write-Verbose "Found $($clouds.Count) cloud(s): $(($clouds | ForEach-Object Name) -join ', ')."

$hostGroups = @($clouds | ForEach-Object { @($_.HostGroup) } | ForEach-Object { [string]$_.Path } | Select-Object -Unique)
$vmHosts = @(Get-SCVMHost -VMMServer $vmmServer | Where-Object {
        $path = [string]$_.VMHostGroup.Path
        @($hostGroups | Where-Object { $path -eq $_ -or $path.StartsWith("$_\") }).Count -gt 0
    })
$hostDocuments = @(foreach ($vmHost in $vmHosts) {
    $fqdn = [string](Get-OptionalProperty $vmHost 'FQDN', 'Name')
    Write-Verbose "Reading the Hyper-V Replica settings of $fqdn."
    $osVersion = Get-OptionalProperty $vmHost 'OperatingSystemVersion'
    if (-not $osVersion) { $osVersion = $vmHost.OperatingSystem.Version }
    [ordered]@{
        id                 = [string]$vmHost.ID
        fqdn               = $fqdn
        host_group         = [string]$vmHost.VMHostGroup.Path
        cluster            = if ($vmHost.HostCluster) { [string]$vmHost.HostCluster.Name } else { $null }
        os                 = [string]$vmHost.OperatingSystem.Name
        os_version         = [string]$osVersion
        hyperv_role        = ([string]$vmHost.VirtualizationPlatform -eq 'HyperV')
        logical_processors = [int]$vmHost.LogicalProcessorCount
        memory_gb          = [math]::Round([double]$vmHost.TotalMemory / $BytesPerGiB, 1)
        replica            = Get-ReplicaServerSettings -ComputerName $fqdn
    }
})

$allVms = @(Get-SCVirtualMachine -VMMServer $vmmServer -All)
$vmDocuments = @(foreach ($cloud in $clouds) {
    $vms = @($allVms | Where-Object { $_.Cloud -and $_.Cloud.ID -eq $cloud.ID })
    Write-Verbose "Cloud $($cloud.Name): $($vms.Count) virtual machine(s)."
    foreach ($vm in $vms) { ConvertTo-VmDocument -Vm $vm -Cloud ([string]$cloud.Name) }
})

$networkDocuments = @(foreach ($network in @(Get-SCVMNetwork -VMMServer $vmmServer)) {
    [ordered]@{
        id              = [string]$network.ID
        name            = [string]$network.Name
        logical_network = [string]$network.LogicalNetwork.Name
        isolation       = [string]$network.IsolationType
        subnets         = @(foreach ($subnet in @(Get-SCVMSubnet -VMMServer $vmmServer -VMNetwork $network)) {
                [ordered]@{ name = [string]$subnet.Name; address_prefix = [string]@($subnet.SubnetVLans)[0].Subnet }
            })
    }
})
$logicalDocuments = @(foreach ($logical in @(Get-SCLogicalNetwork -VMMServer $vmmServer)) {
    [ordered]@{ id = [string]$logical.ID; name = [string]$logical.Name
        network_virtualization = [bool]$logical.NetworkVirtualizationEnabled }
})

Write-Information ("Inventory of ${serverName}: $($clouds.Count) cloud(s), $($hostDocuments.Count) host(s), " +
    "$($vmDocuments.Count) VM(s), $($networkDocuments.Count) VM network(s).")
[ordered]@{
    server           = $serverName
    vmm_version      = [string]$vmmServer.ProductVersion
    clouds           = @(foreach ($cloud in $clouds) {
            [ordered]@{
                id          = [string]$cloud.ID
                name        = [string]$cloud.Name
                description = [string]$cloud.Description
                host_groups = @(@($cloud.HostGroup) | ForEach-Object { [string]$_.Path })
            }
        })
    hosts            = $hostDocuments
    vms              = $vmDocuments
    vm_networks      = $networkDocuments
    logical_networks = $logicalDocuments
} | ConvertTo-Json -Depth 8 -Compress
