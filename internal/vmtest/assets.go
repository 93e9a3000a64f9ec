package vmtest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// EnvAssets names the environment variable that overrides the assets
// directory (the Makefile's vm-assets target honours it too).
const EnvAssets = "BASALT_VM_ASSETS"

// ErrNoAssets means the kernel assets are not where AssetsDir says.
var ErrNoAssets = errors.New("vmtest: VM kernel assets are missing; run `make vm-assets`")

// AssetsDir returns where `make vm-assets` puts the kernel: $BASALT_VM_ASSETS,
// or $HOME/.cache/basalt-vm.
func AssetsDir() (string, error) {
	if dir := os.Getenv(EnvAssets); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the VM assets directory (set %s): %w", EnvAssets, err)
	}
	return filepath.Join(home, ".cache", "basalt-vm"), nil
}

// Assets is an unpacked Debian linux-image package, as `make vm-assets`
// leaves it: DIR/vmlinuz, DIR/lib/modules/RELEASE/ (modules uncompressed)
// and DIR/package (the package's name and version).
type Assets struct {
	// Kernel is the bzImage to boot.
	Kernel string
	// Release is the kernel's `uname -r`.
	Release string
	// ModulesDir is lib/modules/Release under the assets directory.
	ModulesDir string
	// Package names the Debian package the assets came from.
	Package string

	modules map[string]string // module name -> path relative to ModulesDir
	builtin map[string]bool   // modules built into the kernel
}

// LoadAssets finds the kernel and indexes its modules in dir. Missing
// assets give an error wrapping ErrNoAssets.
func LoadAssets(dir string) (*Assets, error) {
	a := &Assets{Kernel: filepath.Join(dir, "vmlinuz")}
	if _, err := os.Stat(a.Kernel); err != nil {
		return nil, fmt.Errorf("%w (looked for %s; set %s to use another directory): %w", ErrNoAssets, a.Kernel, EnvAssets, err)
	}
	pkg, err := os.ReadFile(filepath.Join(dir, "package"))
	if err != nil {
		return nil, fmt.Errorf("%w (incomplete: %w)", ErrNoAssets, err)
	}
	a.Package = strings.TrimSpace(string(pkg))
	releases, err := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if err != nil || len(releases) != 1 {
		return nil, fmt.Errorf("%w (want exactly one kernel under %s/lib/modules, found %d)", ErrNoAssets, dir, len(releases))
	}
	a.ModulesDir = releases[0]
	a.Release = filepath.Base(a.ModulesDir)
	if err := a.index(); err != nil {
		return nil, err
	}
	return a, nil
}

// index records every module file and the built-in modules.
func (a *Assets) index() error {
	a.modules = map[string]string{}
	a.builtin = map[string]bool{}
	err := filepath.WalkDir(filepath.Join(a.ModulesDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := d.Name()
		switch {
		case strings.HasSuffix(base, ".ko"):
			rel, err := filepath.Rel(a.ModulesDir, p)
			if err != nil {
				return err
			}
			a.modules[moduleName(strings.TrimSuffix(base, ".ko"))] = rel
		case strings.Contains(base, ".ko."):
			return fmt.Errorf("%w (compressed module %s: `make vm-assets` decompresses them)", ErrNoAssets, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing kernel modules: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(a.ModulesDir, "modules.builtin"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading modules.builtin: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		base := filepath.Base(strings.TrimSpace(sc.Text()))
		a.builtin[moduleName(strings.TrimSuffix(base, ".ko"))] = true
	}
	return nil
}

// moduleName normalizes a module name as the kernel does ('-' is '_').
func moduleName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// Module is one loadable kernel module.
type Module struct {
	// Name is the module's name, with underscores.
	Name string
	// Path is the .ko file relative to Assets.ModulesDir, as modules.dep
	// spells it (kernel/drivers/block/nbd.ko).
	Path string
	// Depends are the modules it needs loaded first (its modinfo
	// "depends=").
	Depends []string
}

// Resolve returns the named modules and everything they depend on, in an
// order insmod can load them (dependencies first). Built-in modules are
// left out; an unknown name is an error.
func (a *Assets) Resolve(names ...string) ([]Module, error) {
	var out []Module
	seen := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = moduleName(name)
		if seen[name] || a.builtin[name] {
			return nil
		}
		rel, ok := a.modules[name]
		if !ok {
			return fmt.Errorf("vmtest: kernel %s has no module %q (needed by %v)", a.Release, name, chain)
		}
		deps, err := modinfoDepends(filepath.Join(a.ModulesDir, rel))
		if err != nil {
			return err
		}
		seen[name] = true
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		out = append(out, Module{Name: name, Path: rel, Depends: deps})
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// modinfoDepends reads the "depends=" entry of a module's .modinfo
// section.
func modinfoDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo of %s: %w", path, err)
	}
	return parseModinfoDepends(data), nil
}

// parseModinfoDepends returns the modules listed in the depends= entry of
// a .modinfo section (NUL-separated key=value strings), sorted.
func parseModinfoDepends(modinfo []byte) []string {
	var deps []string
	for _, kv := range bytes.Split(modinfo, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte("depends="))
		if !ok {
			continue
		}
		for _, d := range strings.Split(string(v), ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, moduleName(d))
			}
		}
	}
	sort.Strings(deps)
	return deps
}

// modulesDep renders modules.dep for mods, which must be closed under
// dependencies (Resolve's result).
func modulesDep(mods []Module) []byte {
	paths := map[string]string{}
	for _, m := range mods {
		paths[m.Name] = m.Path
	}
	var b bytes.Buffer
	for _, m := range mods {
		b.WriteString(m.Path + ":")
		for _, d := range transitiveDeps(m.Name, mods) {
			b.WriteString(" " + paths[d])
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// transitiveDeps lists every module name depends on, nearest first, as
// depmod writes them.
func transitiveDeps(name string, mods []Module) []string {
	byName := map[string]Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	var out []string
	seen := map[string]bool{name: true}
	queue := []string{name}
	for len(queue) > 0 {
		m := byName[queue[0]]
		queue = queue[1:]
		for _, d := range m.Depends {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
				queue = append(queue, d)
			}
		}
	}
	return out
}
