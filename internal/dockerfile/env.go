package dockerfile

import (
	"slices"
	"strings"
)

// envList mirrors llb.EnvList, the environment BuildKit keeps in its build state: setting a
// key again moves it to the end. RUN sees exactly this order, so it is kept rather than the
// image config's in-place order.
type envList struct {
	keys []string
	vals map[string]string
}

func newEnvList(kvs []string) *envList {
	e := &envList{vals: map[string]string{}}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		e.set(k, v)
	}
	return e
}

func (e *envList) set(k, v string) {
	if _, ok := e.vals[k]; ok {
		i := slices.Index(e.keys, k)
		e.keys = slices.Delete(e.keys, i, i+1)
	}
	e.keys = append(e.keys, k)
	e.vals[k] = v
}

func (e *envList) Get(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

func (e *envList) Keys() []string { return e.keys }

func (e *envList) clone() *envList {
	c := &envList{keys: slices.Clone(e.keys), vals: make(map[string]string, len(e.vals))}
	for k, v := range e.vals {
		c.vals[k] = v
	}
	return c
}

func (e *envList) slice() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

// addEnv updates an image-config env in place, as Docker does for the config (unlike the state).
func addEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if key, _, _ := strings.Cut(kv, "="); key == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}
