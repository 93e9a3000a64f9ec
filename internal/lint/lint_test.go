package lint

import (
	"errors"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestRepository runs every rule over every .go file of the repository and
// checks that every package has a doc.go. Each finding is reported as
// path:line:col with the rule's name.
func TestRepository(t *testing.T) {
	root := repoRoot(t)
	files, findings, err := loadRepo(root)
	if err != nil {
		t.Fatalf("loading %s: %v", root, err)
	}
	n := 0
	for _, fs := range files {
		n += len(fs)
	}
	t.Logf("checked %d files in %d directories under %s", n, len(files), root)
	if n == 0 {
		t.Fatalf("found no .go files under %s", root)
	}

	for _, fs := range files {
		for _, f := range fs {
			findings = append(findings, checkFile(f)...)
		}
	}
	findings = append(findings, checkDocs(files)...)
	sort.Slice(findings, func(i, j int) bool { return findings[i].String() < findings[j].String() })
	for _, fd := range findings {
		t.Error(fd)
	}
}

// repoRoot finds the repository root: the nearest directory at or above the
// working directory that holds go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getting working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// skipDir reports whether the walk skips the directory rel (slash-separated,
// relative to the root): what the go command ignores (testdata, names
// starting with . or _, nested modules), plus the repository's tool, binary
// and data directories.
func skipDir(root, rel string) bool {
	base := path.Base(rel)
	switch {
	case rel == ".":
		return false
	case base == "testdata" || base == "vendor" || base == "node_modules":
		return true
	case strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_"):
		return true // .git, .tools, .ci, ...
	case rel == "bin" || rel == "basalt-data":
		return true
	}
	_, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel), "go.mod"))
	return err == nil
}

// loadRepo parses every .go file under root, grouped by directory. Files
// that do not parse are returned as findings.
func loadRepo(root string) (map[string][]*srcFile, []finding, error) {
	files := map[string][]*srcFile{}
	var unparsed []finding
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if skipDir(root, rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(rel, ".go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked: someone is editing
		}
		if err != nil {
			return err
		}
		f, err := parseSource(rel, src)
		if err != nil {
			unparsed = append(unparsed, finding{rule: "parse", pos: token.Position{Filename: rel, Line: 1, Column: 1}, msg: err.Error()})
			return nil
		}
		files[path.Dir(rel)] = append(files[path.Dir(rel)], f)
		return nil
	})
	return files, unparsed, err
}

func TestSkipDir(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "sub", "nested"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sub", "nested", "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		".":                 false,
		"raft":              false,
		"raft/transportpb":  false,
		"bin":               true,
		"cmd/bin":           false,
		".tools":            true,
		".git":              true,
		"_scratch":          true,
		"raft/testdata":     true,
		"basalt-data":       true,
		"sub":               false,
		"sub/nested":        true,
		"internal/testdata": true,
	} {
		if got := skipDir(root, rel); got != want {
			t.Errorf("skipDir(%q) = %v, want %v", rel, got, want)
		}
	}
}
