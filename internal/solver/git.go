package solver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/strata-build/strata/internal/contenthash"
	"github.com/strata-build/strata/internal/copier"
	"github.com/strata-build/strata/internal/graph"
)

// gitInput is a git source of ADD with the commit its ref resolved to (by git ls-remote, at key
// time, as BuildKit's git source does in CacheKey): the commit, subdir and keep-git-dir are the
// key, so an unchanged ref is a hit with no clone and a moved branch a miss.
type gitInput struct {
	src    graph.GitSource
	commit string
}

// name is how the source is shown and summarised: the URL without credentials, and the ref.
func (g gitInput) name() string {
	s := redactURL(g.src.Remote)
	if g.src.Ref != "" {
		s += "#" + g.src.Ref
	}
	return s
}

// keyString is what the step's key reads of the source: never the URL's credentials.
func (g gitInput) keyString() string {
	return fmt.Sprintf("git %s %s subdir=%s keepGitDir=%t submodules=%t", redactURL(g.src.Remote), g.commit, g.src.SubDir, g.src.KeepGitDir, g.src.Submodules)
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$|^[0-9a-f]{64}$`)

// redactURL drops the credentials of a URL: an http(s) userinfo (the user may be a token), a
// password elsewhere (ssh://git@host and git@host:path keep their user name).
func redactURL(remote string) string {
	u, err := url.Parse(remote)
	if err != nil || u.User == nil || u.Scheme == "" {
		return remote
	}
	if _, hasPw := u.User.Password(); !hasPw && u.Scheme != "http" && u.Scheme != "https" {
		return remote // ssh://git@host: a user name, no secret (an http user may be a token)
	}
	u.User = nil
	return u.String()
}

// gitBinary is the host's git, which fetches ADD's git sources.
func gitBinary() (string, error) {
	p, err := exec.LookPath("git")
	if err != nil {
		return "", errors.New("ADD of a git repository needs git on the host: install Debian's git package (apt-get install git)")
	}
	return p, nil
}

// runGit runs git with umask 022 (so the checkout's modes are 0644/0755 as in BuildKit's
// snapshot), no terminal prompt and the host's own credential setup; errors never show the
// URL's credentials.
func runGit(ctx context.Context, dir string, remote string, args ...string) (string, error) {
	bin, err := gitBinary()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `umask 022 && exec "$0" "$@"`, bin}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=true", "LC_ALL=C")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if remote != "" {
			msg = strings.ReplaceAll(msg, remote, redactURL(remote))
		}
		return "", fmt.Errorf("git %s: %v: %s", args[0], err, msg)
	}
	return out.String(), nil
}

// resolveGit finds the commit src's ref names with git ls-remote (no clone). A ref that is a
// commit sha is its own commit. A --checksum must match the commit.
func resolveGit(ctx context.Context, src graph.GitSource) (gitInput, error) {
	g := gitInput{src: src}
	name := g.name()
	var tagObj string
	if shaRE.MatchString(src.Ref) {
		g.commit = src.Ref
	} else {
		out, err := runGit(ctx, "", src.Remote, "ls-remote", "--", src.Remote)
		if err != nil {
			return g, fmt.Errorf("ADD %s: %w", name, err)
		}
		g.commit, tagObj, err = pickRef(out, src.Ref)
		if err != nil {
			return g, fmt.Errorf("ADD %s: %w", name, err)
		}
	}
	// Like BuildKit, the checksum is the commit or an annotated tag's own object, or a prefix.
	if src.Checksum != "" && !strings.HasPrefix(g.commit, src.Checksum) && (tagObj == "" || !strings.HasPrefix(tagObj, src.Checksum)) {
		return g, fmt.Errorf("ADD %s: checksum mismatch: expected commit %s, ref resolves to %s", name, src.Checksum, g.commit)
	}
	return g, nil
}

// pickRef reads git ls-remote's output: "" is HEAD; a name is tried as given, then as a branch,
// then as a tag (an annotated tag's peeled commit, ^{}, wins; the tag object is returned too).
func pickRef(out, ref string) (commit, tagObj string, err error) {
	refs := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		sha, name, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if ok {
			refs[name] = sha
		}
	}
	if ref == "" {
		ref = "HEAD"
	}
	for _, c := range []string{ref, "refs/heads/" + ref, "refs/tags/" + ref} {
		if sha, ok := refs[c+"^{}"]; ok {
			return sha, refs[c], nil
		}
		if sha, ok := refs[c]; ok {
			return sha, "", nil
		}
	}
	return "", "", fmt.Errorf("ref %q not found in the repository", ref)
}

// checkoutGit fetches g's commit shallowly into a new directory under tmp and checks it out
// (with submodules unless skipped), dropping .git unless keep-git-dir. It returns the checkout.
func checkoutGit(ctx context.Context, tmp string, g gitInput) (string, error) {
	dir := filepath.Join(tmp, "checkout")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	name := g.name()
	remote := g.src.Remote
	steps := [][]string{
		{"init", "-q"},
		{"remote", "add", "origin", remote},
	}
	// Fetch the ref by name (any server serves that); a ref that is a commit is fetched by sha.
	want := g.commit
	if !shaRE.MatchString(g.src.Ref) {
		want = g.src.Ref
		if want == "" {
			want = "HEAD"
		}
	}
	steps = append(steps, []string{"fetch", "-q", "--depth", "1", "--no-tags", "origin", want})
	for _, a := range steps {
		if _, err := runGit(ctx, dir, remote, a...); err != nil {
			return "", fmt.Errorf("ADD %s: %w", name, err)
		}
	}
	head, err := runGit(ctx, dir, remote, "rev-parse", "FETCH_HEAD^{commit}")
	if err != nil {
		return "", fmt.Errorf("ADD %s: %w", name, err)
	}
	if got := strings.TrimSpace(head); got != g.commit {
		return "", fmt.Errorf("ADD %s: the ref moved while building (resolved %s, fetched %s): build again", name, g.commit, got)
	}
	if _, err := runGit(ctx, dir, remote, "checkout", "-q", "--detach", g.commit); err != nil {
		return "", fmt.Errorf("ADD %s: %w", name, err)
	}
	if g.src.Submodules {
		if _, err := os.Stat(filepath.Join(dir, ".gitmodules")); err == nil {
			if _, err := runGit(ctx, dir, remote, "submodule", "update", "--init", "--recursive", "--depth", "1"); err != nil {
				return "", fmt.Errorf("ADD %s: %w", name, err)
			}
		}
	}
	if g.src.KeepGitDir {
		// The kept .git must not carry the URL's credentials into the image.
		if _, err := runGit(ctx, dir, remote, "remote", "set-url", "origin", redactURL(remote)); err != nil {
			return "", fmt.Errorf("ADD %s: %w", name, err)
		}
	} else {
		if err := os.RemoveAll(filepath.Join(dir, ".git")); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// copyGit checks g out into scratch space and copies it (or its subdir) to dest as a local
// directory ADD is copied: the contents go into dest, owned by 0:0 unless --chown, with --chmod.
func (s *solver) copyGit(ctx context.Context, g gitInput, root, dest string, opts copier.Options) error {
	tmp, err := s.opts.Store.TempDir("git-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir, err := checkoutGit(ctx, tmp, g)
	if err != nil {
		return err
	}
	src := "."
	if sub := strings.Trim(path.Clean("/"+g.src.SubDir), "/"); sub != "" {
		src = sub
	}
	sel, err := (&contenthash.Source{Root: dir, Where: "git " + g.name(), EmptyWildcards: true}).Select(ctx, []string{src}, nil)
	if err != nil {
		return fmt.Errorf("ADD %s: %w", g.name(), err)
	}
	o := opts
	o.FromContext = true
	return copier.Copy(ctx, dir, sel, root, dest, o)
}
