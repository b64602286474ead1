package dockerfile

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// defaultPath is what BuildKit puts in PATH when the base image sets none, so RUN finds /bin/sh.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var defaultShell = []string{"/bin/sh", "-c"}

func withShell(sh []string, args []string) []string {
	if len(sh) == 0 {
		sh = defaultShell
	}
	out := append([]string{}, sh...)
	return append(out, strings.Join(args, " "))
}

func uppercaseCmd(s string) string {
	name, rest, ok := strings.Cut(s, " ")
	if !ok {
		return strings.ToUpper(name)
	}
	return strings.ToUpper(name) + " " + rest
}

// summarizeHeredoc is BuildKit's summary of a heredoc body: its first line, "..." if more follow.
// It reads only the first line: splitting a 200 MB body into lines would cost a slice header per
// line.
func summarizeHeredoc(doc string) string {
	doc = strings.TrimSpace(doc)
	first, _, more := strings.Cut(doc, "\n")
	first = strings.TrimSuffix(first, "\r")
	if more {
		first += "..."
	}
	return first
}

// runCommandString is BuildKit's history text for RUN: the build args in scope are listed as
// "|N K=V ..." so two images built with different args have different history.
func runCommandString(args []string, buildArgs []instructions.KeyValuePairOptional, env shell.EnvGetter) string {
	var tmp []string
	idx := map[string]int{}
	for _, arg := range buildArgs {
		v, ok := env.Get(arg.Key)
		if !ok {
			v = arg.ValueString()
		}
		if i, ok := idx[arg.Key]; ok {
			tmp[i] = arg.Key + "=" + v
		} else {
			idx[arg.Key] = len(tmp)
			tmp = append(tmp, arg.Key+"="+v)
		}
	}
	if len(tmp) > 0 {
		tmp = append([]string{fmt.Sprintf("|%d", len(tmp))}, tmp...)
	}
	return strings.Join(append(tmp, args...), " ")
}

// normalizeWorkdir is BuildKit's system.NormalizeWorkdir on Linux: a relative WORKDIR is joined
// (and so cleaned) onto the current one, an absolute one is kept as written, trailing slash and
// all, because that is what lands in the image config.
func normalizeWorkdir(current, requested string) (string, error) {
	if requested == "" {
		// WORKDIR $EMPTY: BuildKit stays in the current directory (and creates it again).
		if current == "" {
			return "/", nil
		}
		return current, nil
	}
	if !path.IsAbs(requested) {
		if current == "" {
			current = "/"
		}
		return path.Join("/", current, requested), nil
	}
	return requested, nil
}

// parsePorts turns EXPOSE arguments ("80", "53/udp", "8000-8001", "127.0.0.1:80:8080/tcp") into
// the "port/proto" keys of ExposedPorts.
func parsePorts(ports []string) ([]string, error) {
	var out []string
	for _, raw := range ports {
		spec, proto := raw, "tcp"
		if i := strings.LastIndex(spec, "/"); i >= 0 {
			spec, proto = spec[:i], strings.ToLower(spec[i+1:])
		}
		switch proto {
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("invalid proto: %s", proto)
		}
		if i := strings.LastIndex(spec, ":"); i >= 0 {
			spec = spec[i+1:]
		}
		lo, hi, isRange := strings.Cut(spec, "-")
		start, err := strconv.ParseUint(lo, 10, 16)
		if err != nil || start == 0 {
			return nil, fmt.Errorf("invalid containerPort: %s", raw)
		}
		end := start
		if isRange {
			end, err = strconv.ParseUint(hi, 10, 16)
			if err != nil || end < start {
				return nil, fmt.Errorf("invalid containerPort: %s", raw)
			}
		}
		for p := start; p <= end; p++ {
			out = append(out, fmt.Sprintf("%d/%s", p, proto))
		}
	}
	return out, nil
}

var signals = map[string]bool{
	"ABRT": true, "ALRM": true, "BUS": true, "CHLD": true, "CLD": true, "CONT": true, "FPE": true,
	"HUP": true, "ILL": true, "INT": true, "IO": true, "IOT": true, "KILL": true, "PIPE": true,
	"POLL": true, "PROF": true, "PWR": true, "QUIT": true, "SEGV": true, "STKFLT": true,
	"STOP": true, "SYS": true, "TERM": true, "TRAP": true, "TSTP": true, "TTIN": true, "TTOU": true,
	"URG": true, "USR1": true, "USR2": true, "VTALRM": true, "WINCH": true, "XCPU": true,
	"XFSZ": true, "RTMIN": true, "RTMAX": true, "UNUSED": true,
}

var rtSignal = regexp.MustCompile(`^RT(MIN\+([1-9]|1[0-5])|MAX-([1-9]|1[0-4]))$`)

func validSignal(s string) bool {
	if n, err := strconv.Atoi(s); err == nil {
		return n > 0 && n <= 64
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	return signals[name] || rtSignal.MatchString(name)
}

func isHTTPSource(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

func isGitSource(src string) bool {
	if strings.HasPrefix(src, "git@") || strings.HasPrefix(src, "git://") || strings.HasPrefix(src, "ssh://") {
		return true
	}
	if !isHTTPSource(src) {
		return false
	}
	u, _, _ := strings.Cut(src, "#")
	u, _, _ = strings.Cut(u, "?")
	return strings.HasSuffix(u, ".git")
}

func cloneConfig(c dockerspec.DockerOCIImageConfig) dockerspec.DockerOCIImageConfig {
	out := c
	out.Env = cloneStrings(c.Env)
	out.Cmd = cloneStrings(c.Cmd)
	out.Entrypoint = cloneStrings(c.Entrypoint)
	out.OnBuild = cloneStrings(c.OnBuild)
	out.Shell = cloneStrings(c.Shell)
	out.ExposedPorts = cloneSet(c.ExposedPorts)
	out.Volumes = cloneSet(c.Volumes)
	if c.Labels != nil {
		out.Labels = make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			out.Labels[k] = v
		}
	}
	if c.Healthcheck != nil {
		hc := *c.Healthcheck
		hc.Test = cloneStrings(c.Healthcheck.Test)
		out.Healthcheck = &hc
	}
	return out
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

func cloneSet(m map[string]struct{}) map[string]struct{} {
	if m == nil {
		return nil
	}
	out := make(map[string]struct{}, len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}
