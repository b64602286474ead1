package build

import (
	"fmt"
	"net"
	"strings"

	units "github.com/docker/go-units"

	"github.com/strata-build/strata/internal/graph"
)

// HostGatewayIP is what --add-host NAME:host-gateway maps to. Docker asks its daemon for the
// bridge gateway; strata has no daemon and no bridge: RUN steps share the host's network
// namespace (or have none), so the host is reachable on its own loopback address.
const HostGatewayIP = "127.0.0.1"

// ParseSandbox reads --add-host, --ulimit and --shm-size as buildx does (add-host NAME:IP or
// NAME=IP, several IPs separated by commas, [IPv6] in brackets; ulimit NAME=SOFT[:HARD]; shm
// size with a unit suffix, bytes without).
func ParseSandbox(addHosts, ulimits []string, shmSize string) (graph.Sandbox, error) {
	var sb graph.Sandbox
	for _, h := range addHosts {
		name, ips, ok := strings.Cut(h, "=")
		if !ok {
			name, ips, ok = strings.Cut(h, ":")
		}
		if !ok || name == "" || ips == "" {
			return sb, fmt.Errorf("--add-host %q: use NAME:IP (or NAME=IP)", h)
		}
		if ips == "host-gateway" {
			sb.ExtraHosts = append(sb.ExtraHosts, graph.Host{Name: name, IP: HostGatewayIP})
			continue
		}
		for ip := range strings.SplitSeq(ips, ",") {
			if len(ip) > 2 && ip[0] == '[' && ip[len(ip)-1] == ']' {
				ip = ip[1 : len(ip)-1]
			}
			parsed := net.ParseIP(ip)
			if parsed == nil {
				return sb, fmt.Errorf("--add-host %q: %q is not an IP address (or host-gateway)", h, ip)
			}
			sb.ExtraHosts = append(sb.ExtraHosts, graph.Host{Name: name, IP: parsed.String()})
		}
	}
	seen := map[string]int{}
	for _, u := range ulimits {
		l, err := units.ParseUlimit(u)
		if err != nil {
			return sb, fmt.Errorf("--ulimit %q: %w (use NAME=SOFT[:HARD], e.g. nofile=1024:2048)", u, err)
		}
		// Docker keeps one limit per name, the last given.
		if i, ok := seen[l.Name]; ok {
			sb.Ulimits[i] = graph.Ulimit{Name: l.Name, Soft: l.Soft, Hard: l.Hard}
			continue
		}
		seen[l.Name] = len(sb.Ulimits)
		sb.Ulimits = append(sb.Ulimits, graph.Ulimit{Name: l.Name, Soft: l.Soft, Hard: l.Hard})
	}
	if shmSize != "" {
		n, err := units.RAMInBytes(shmSize)
		if err != nil || n < 0 {
			return sb, fmt.Errorf("--shm-size %q: use a size such as 128m or 1g", shmSize)
		}
		sb.ShmSize = n
	}
	return sb, nil
}
