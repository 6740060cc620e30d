<#
.SYNOPSIS
    Probes one port of a test failover VM from this VMM server: does a TCP port accept a
    connection, or does an HTTP GET answer with a status below 400 (DR drills, step 10).

.DESCRIPTION
    Run on the recovery site's VMM server while a test failover is active, after the test VM
    is running. The VM's address comes from VMM (Get-SCVirtualMachine, the first IPv4 address
    of its network adapters, reported by the guest through integration services; APIPA
    addresses left out). Then:
      tcp   System.Net.Sockets.TcpClient.ConnectAsync, waited on for -TimeoutSeconds;
      http  Invoke-WebRequest GET http://<address>:<port><path>, no redirects followed (a
            3xx is an answer); any status below 400 passes, 4xx and 5xx fail.
    A VM that does not exist, is not running or has no IPv4 address is reported with
    ok = false and the reason in detail; so is a port that refuses, times out or does not
    speak HTTP. Those are answers for the drill report, not errors.

    Writes exactly one JSON document (ConvertTo-Json -Compress) to the output stream:
    {vm_name, kind, port, path, address, ok, status_code, elapsed_ms, detail};
    TestVmEndpointResult in plugins/site_recovery/scripts.py reads it. path is null for tcp;
    status_code is the HTTP status when one came back; elapsed_ms is null when nothing was
    probed.

.PARAMETER VmName
    The test VM's name, e.g. "SQL-PRD-01 - Test".

.PARAMETER Kind
    tcp: the port accepts a TCP connection. http: a GET answers with a status below 400.

.PARAMETER Port
    The port to probe, 1-65535.

.PARAMETER Path
    The path of the GET, starting with /; http only. Default /.

.PARAMETER TimeoutSeconds
    How long to wait for the connection (tcp) or the whole answer (http), 1-300. Default 10.

.NOTES
    The probe goes from this server to the test VM: the drill network must route to it (or
    the server must have a leg on it), and the guest firewall must allow the port from here.
    The http probe goes direct, past any proxy configured for this server: a drill network
    is not reachable through the corporate proxy. Works on Windows PowerShell 5.1 (Windows
    Server 2012 R2 and later).
#>
# asr-lab-twin: Test-TestVmEndpoint
#Requires -Version 5.1
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [string]$VmName,

    [Parameter(Mandatory = $true)]
    [ValidateSet('tcp', 'http')]
    [string]$Kind,

    [Parameter(Mandatory = $true)]
    [ValidateRange(1, 65535)]
    [int]$Port,

    [ValidatePattern('^/\S*$')]
    [string]$Path = '/',

    [ValidateRange(1, 300)]
    [int]$TimeoutSeconds = 10
)

$ErrorActionPreference = 'Stop'
if (-not $PSBoundParameters.ContainsKey('Verbose')) { $VerbosePreference = 'Continue' }
$Kind = $Kind.ToLowerInvariant()
$probePath = if ($Kind -eq 'http') { $Path } else { $null }  # $Path itself cannot hold $null: it is validated
if ($Kind -eq 'tcp' -and $PSBoundParameters.ContainsKey('Path')) {
    Write-Warning "-Path is for http probes; a tcp probe ignores '$Path'."
}

function Get-InnermostException {
    param([System.Exception]$Exception)
    while ($Exception.InnerException) { $Exception = $Exception.InnerException }
    return $Exception
}

function Test-TcpPort {
    # -> @{ ok; status_code; detail }; elapsed is measured by the caller.
    param([string]$Address, [int]$Port, [int]$TimeoutSeconds)
    $client = New-Object -TypeName System.Net.Sockets.TcpClient
    try {
        $connect = $client.ConnectAsync($Address, $Port)
        if (-not $connect.Wait([timespan]::FromSeconds($TimeoutSeconds))) {
            $why = 'the port is filtered, or the VM does not route back to this server'
            return @{ ok = $false; status_code = $null; detail = "no answer within $TimeoutSeconds s ($why)" }
        }
        return @{ ok = $true; status_code = $null; detail = 'connection accepted' }
    } catch {
        $failure = Get-InnermostException -Exception $_.Exception
        Write-Verbose "Connecting to ${Address}:$Port failed: $($failure.Message)"
        if ($failure -is [System.Net.Sockets.SocketException]) {
            $code = [string]$failure.SocketErrorCode
            if ($code -eq 'ConnectionRefused') {
                return @{ ok = $false; status_code = $null
                    detail = "connection refused (nothing listens on port $Port, or the guest firewall rejects it)" }
            }
            return @{ ok = $false; status_code = $null; detail = "${code}: $($failure.Message)" }
        }
        return @{ ok = $false; status_code = $null; detail = $failure.Message }
    } finally {
        $client.Close()
    }
}

function Test-HttpGet {
    # -> @{ ok; status_code; detail }; elapsed is measured by the caller.
    param([string]$Uri, [int]$TimeoutSeconds)
    $savedProxy = [System.Net.WebRequest]::DefaultWebProxy
    [System.Net.WebRequest]::DefaultWebProxy = New-Object -TypeName System.Net.WebProxy  # direct
    try {
        # Windows PowerShell reports a redirect it may not follow as a non-terminating error and
        # still returns the 3xx response; 4xx and 5xx throw a WebException that carries the response.
        $response = Invoke-WebRequest -Uri $Uri -Method Get -UseBasicParsing -TimeoutSec $TimeoutSeconds `
            -MaximumRedirection 0 -ErrorAction SilentlyContinue -ErrorVariable redirected -Verbose:$false
        if (-not $response) {
            $reason = if ($redirected) { [string]$redirected[0] } else { 'no response' }
            return @{ ok = $false; status_code = $null; detail = "no HTTP answer: $reason" }
        }
        $status = [int]$response.StatusCode
        $description = [string]$response.StatusDescription
    } catch [System.Net.WebException] {
        $webError = $_.Exception
        if (-not $webError.Response) {
            Write-Verbose "GET $Uri failed: $($webError.Status): $($webError.Message)"
            return @{ ok = $false; status_code = $null; detail = "no HTTP answer: $($webError.Message)" }
        }
        $status = [int]$webError.Response.StatusCode
        $description = [string]$webError.Response.StatusDescription
        $webError.Response.Close()
    } finally {
        [System.Net.WebRequest]::DefaultWebProxy = $savedProxy
    }
    return @{ ok = ($status -lt 400); status_code = $status; detail = "HTTP $status $description".Trim() }
}

Import-Module -Name virtualmachinemanager -Verbose:$false
$vmmServer = Get-SCVMMServer -ComputerName localhost
$serverName = if ($vmmServer.FQDN) { [string]$vmmServer.FQDN } else { [string]$vmmServer.Name }
$result = [ordered]@{
    vm_name = $VmName; kind = $Kind; port = $Port; path = $probePath; address = $null
    ok = $false; status_code = $null; elapsed_ms = $null; detail = ''
}

$vms = @(Get-SCVirtualMachine -VMMServer $vmmServer -Name $VmName)
$address = $null
if (-not $vms) {
    $result.detail = "no virtual machine named '$VmName' on $serverName"
} else {
    if ($vms.Count -gt 1) {
        Write-Warning "$($vms.Count) virtual machines are named '$VmName'; probing the first ($($vms[0].ID))."
    }
    $vm = Read-SCVirtualMachine -VM $vms[0]  # refresh state and guest addresses from the host
    $result.vm_name = [string]$vm.Name
    $state = [string]$vm.VirtualMachineState
    if ($state -ne 'Running') {
        $result.detail = "'$($vm.Name)' is $state, not Running"
    } else {
        $address = @(foreach ($adapter in @($vm.VirtualNetworkAdapters)) {
                @($adapter.IPv4Addresses) | Where-Object { $_ -and [string]$_ -notlike '169.254.*' } |
                    ForEach-Object { [string]$_ }
            }) | Select-Object -First 1
        if (-not $address) {
            $result.detail = "'$($vm.Name)' has no IPv4 address (the guest has not reported one to VMM)"
        }
    }
}

if ($address) {
    $result.address = $address
    $target = if ($Kind -eq 'http') { "http://${address}:$Port$probePath" } else { "${address}:$Port" }
    Write-Verbose "Probing $Kind $target on '$($result.vm_name)' (timeout $TimeoutSeconds s)."
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    $probe = if ($Kind -eq 'http') {
        Test-HttpGet -Uri $target -TimeoutSeconds $TimeoutSeconds
    } else {
        Test-TcpPort -Address $address -Port $Port -TimeoutSeconds $TimeoutSeconds
    }
    $watch.Stop()
    $result.ok = [bool]$probe.ok
    $result.status_code = $probe.status_code
    $result.elapsed_ms = [int]$watch.ElapsedMilliseconds
    $result.detail = [string]$probe.detail
}
$outcome = if ($result.ok) { 'passed' } else { 'failed' }
Write-Information "$Kind port $Port on '$($result.vm_name)': $outcome, $($result.detail)."
$result | ConvertTo-Json -Depth 3 -Compress
