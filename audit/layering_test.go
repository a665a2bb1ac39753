package audit

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps imports pointing one way (DESIGN.md):
// cmd -> api -> {sandbox, mpc, audit} -> {chain, policies}, and no product
// package imports a test-support package (chaintest). One package crosses
// sideways: sandbox/heparams (the CKKS parameters and their strict wire
// format), which mpc imports too; it imports neither sandbox nor mpc.
func TestLayering(t *testing.T) {
	const mod = "github.com/datasandbox/datasandbox/"
	allowed := map[string][]string{
		"chain":    {},
		"policies": {},
		"audit":    {"chain", "policies"},
		"sandbox":  {"chain", "policies"},
		"mpc":      {"chain", "policies", "sandbox/heparams"},
		"api":      {"chain", "policies", "audit", "sandbox", "mpc"},
		// Shared with mpc: it may import only what mpc may.
		"sandbox/heparams": {"chain", "policies"},
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		top, _, _ := strings.Cut(pkg, "/")
		if _, own := allowed[pkg]; own {
			top = pkg
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			if strings.HasSuffix(dep, "test") && !strings.HasSuffix(pkg, "test") {
				t.Errorf("%s imports test support %s", pkg, dep)
			}
			depTop, _, _ := strings.Cut(dep, "/")
			if depTop == top || top == "cmd" {
				continue
			}
			ok := false
			for _, a := range allowed[top] {
				ok = ok || a == depTop || a == dep
			}
			if !ok {
				t.Errorf("%s may not import %s", pkg, dep)
			}
		}
	}
}
