package lint

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A finding is one rule violation.
type finding struct {
	rule string
	pos  token.Position // Filename is slash-separated and relative to the repository root
	msg  string
}

func (f finding) String() string {
	return fmt.Sprintf("%s:%d:%d: [%s] %s", f.pos.Filename, f.pos.Line, f.pos.Column, f.rule, f.msg)
}

// A srcFile is one parsed Go file.
type srcFile struct {
	path      string // slash-separated, relative to the repository root
	fset      *token.FileSet
	ast       *ast.File
	test      bool // a _test.go file
	generated bool // carries a "Code generated ... DO NOT EDIT." comment
	imports   map[string]string
}

// parseSource parses one file; rel is its slash-separated path relative to
// the repository root and decides which rules apply (cmd/, _test.go).
func parseSource(rel string, src []byte) (*srcFile, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, rel, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", rel, err)
	}
	sf := &srcFile{
		path:      rel,
		fset:      fset,
		ast:       f,
		test:      strings.HasSuffix(rel, "_test.go"),
		generated: ast.IsGenerated(f),
		imports:   map[string]string{},
	}
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			continue
		}
		name := path.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		sf.imports[name] = p
	}
	return sf, nil
}

// underCmd reports whether the file belongs to a binary's main package.
func (f *srcFile) underCmd() bool {
	return strings.HasPrefix(f.path, "cmd/")
}

func (f *srcFile) finding(rule string, pos token.Pos, format string, args ...any) finding {
	return finding{rule: rule, pos: f.fset.Position(pos), msg: fmt.Sprintf(format, args...)}
}

// pkgFunc returns the import path and name of a call to a package-level
// function (os.Exit -> "os", "Exit"), or "" when fun is anything else.
func (f *srcFile) pkgFunc(fun ast.Expr) (pkg, name string) {
	sel, ok := fun.(*ast.SelectorExpr)
	if !ok {
		return "", ""
	}
	id, ok := sel.X.(*ast.Ident)
	if !ok {
		return "", ""
	}
	return f.imports[id.Name], sel.Sel.Name
}

// A rule is one check over one file.
type rule struct {
	name    string // the name a //basalt:allow directive uses
	applies func(*srcFile) bool
	check   func(*srcFile) []finding
}

// rules are the per-file rules, in the order they are reported.
var rules = []rule{
	{name: "exit", applies: notGenerated(func(f *srcFile) bool { return !f.test && !f.underCmd() }), check: checkExit},
	{name: "errstring", applies: notGenerated(nil), check: checkErrString},
	{name: "errwrap", applies: notGenerated(nil), check: checkErrWrap},
	{name: "init", applies: notGenerated(func(f *srcFile) bool { return !f.test }), check: checkInit},
}

// notGenerated limits a rule to hand-written files, and further to those
// that pass also (when not nil).
func notGenerated(also func(*srcFile) bool) func(*srcFile) bool {
	return func(f *srcFile) bool {
		return !f.generated && (also == nil || also(f))
	}
}

// checkExit finds os.Exit and log.Fatal*: only main decides to exit; library
// code returns errors.
func checkExit(f *srcFile) []finding {
	var out []finding
	ast.Inspect(f.ast, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		pkg, name := f.pkgFunc(call.Fun)
		if (pkg == "os" && name == "Exit") || (pkg == "log" && strings.HasPrefix(name, "Fatal")) {
			out = append(out, f.finding("exit", call.Pos(),
				"%s.%s outside cmd/: return an error and let main exit", path.Base(pkg), name))
		}
		return true
	})
	return out
}

// stringMatchers are the strings functions that, given err.Error(), match an
// error by its message.
var stringMatchers = map[string]bool{
	"Contains": true, "ContainsAny": true, "HasPrefix": true, "HasSuffix": true,
	"EqualFold": true, "Index": true, "Compare": true,
}

// checkErrString finds errors matched by their message: err.Error() == "..",
// strings.Contains(err.Error(), ..), re.MatchString(err.Error()) and
// switch err.Error() {..}. Use errors.Is/As, sentinels and typed errors.
func checkErrString(f *srcFile) []finding {
	var out []finding
	report := func(pos token.Pos, what string) {
		out = append(out, f.finding("errstring", pos,
			"error matched by its message (%s): use errors.Is/errors.As with a sentinel or typed error", what))
	}
	ast.Inspect(f.ast, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BinaryExpr:
			if (n.Op == token.EQL || n.Op == token.NEQ) && (isErrorCall(n.X) || isErrorCall(n.Y)) {
				report(n.Pos(), ".Error() "+n.Op.String())
			}
		case *ast.SwitchStmt:
			if n.Tag != nil && isErrorCall(n.Tag) {
				report(n.Pos(), "switch on .Error()")
			}
		case *ast.CallExpr:
			if what := stringMatchCall(f, n); what != "" && anyErrorCall(n.Args) {
				report(n.Pos(), what+"(.Error())")
			}
		}
		return true
	})
	return out
}

// stringMatchCall names the call if it is one of stringMatchers or a
// regexp's MatchString, and returns "" otherwise.
func stringMatchCall(f *srcFile, call *ast.CallExpr) string {
	if pkg, name := f.pkgFunc(call.Fun); pkg == "strings" && stringMatchers[name] {
		return "strings." + name
	}
	if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "MatchString" {
		return "MatchString"
	}
	return ""
}

// isErrorCall reports whether e is a call x.Error() without arguments.
func isErrorCall(e ast.Expr) bool {
	call, ok := ast.Unparen(e).(*ast.CallExpr)
	if !ok || len(call.Args) != 0 {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Error"
}

func anyErrorCall(args []ast.Expr) bool {
	for _, a := range args {
		if isErrorCall(a) {
			return true
		}
	}
	return false
}

// errName matches the names an error variable conventionally has: err,
// closeErr, syncErr, and short ones such as cerr or werr.
var errName = regexp.MustCompile(`^(err|[a-z]err|[a-zA-Z0-9]*Err)$`)

// checkErrWrap finds fmt.Errorf calls that format an error operand with a
// verb other than %w (or format err.Error()), which cuts the chain that
// errors.Is/As follow. The format must be a string literal; operands are
// recognized as errors by name only (errName), so this is a heuristic that
// errs on the side of silence.
func checkErrWrap(f *srcFile) []finding {
	var out []finding
	ast.Inspect(f.ast, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		if pkg, name := f.pkgFunc(call.Fun); pkg != "fmt" || name != "Errorf" {
			return true
		}
		format, ok := stringLit(call.Args[0])
		if !ok {
			return true
		}
		args := call.Args[1:]
		for _, op := range formatOperands(format) {
			if op.arg < 0 || op.arg >= len(args) || op.verb == 'w' {
				continue
			}
			if what := errorOperand(args[op.arg]); what != "" {
				out = append(out, f.finding("errwrap", args[op.arg].Pos(),
					"fmt.Errorf formats %s with %%%c: wrap it with %%w", what, op.verb))
			}
		}
		return true
	})
	return out
}

// errorOperand describes e if it looks like an error (or err.Error()), and
// returns "" otherwise.
func errorOperand(e ast.Expr) string {
	e = ast.Unparen(e)
	if isErrorCall(e) {
		return "an error's message"
	}
	var name string
	switch e := e.(type) {
	case *ast.Ident:
		name = e.Name
	case *ast.SelectorExpr:
		name = e.Sel.Name
	}
	if name != "" && errName.MatchString(name) {
		return "error " + name
	}
	return ""
}

// stringLit returns the value of a string literal, or of a + concatenation
// of string literals.
func stringLit(e ast.Expr) (string, bool) {
	switch e := ast.Unparen(e).(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok1 := stringLit(e.X)
		y, ok2 := stringLit(e.Y)
		return x + y, ok1 && ok2
	}
	return "", false
}

// A formatOperand is one verb of a printf format and the index (from 0) of
// the operand it formats.
type formatOperand struct {
	verb rune
	arg  int
}

// formatOperands lists the verbs of a printf format with the operands they
// consume, following fmt's rules for flags, '*' widths and precisions, and
// explicit [n] argument indexes. %% consumes nothing.
func formatOperands(format string) []formatOperand {
	var out []formatOperand
	arg := 0
	i := 0
	// index applies an explicit argument index [n] at i, if there is one.
	index := func() {
		if i >= len(format) || format[i] != '[' {
			return
		}
		end := strings.IndexByte(format[i:], ']')
		if end < 0 {
			return
		}
		if n, err := strconv.Atoi(format[i+1 : i+end]); err == nil && n > 0 {
			arg = n - 1
		}
		i += end + 1
	}
	// number skips a '*' (which consumes an operand) or a run of digits.
	number := func() {
		if i < len(format) && format[i] == '*' {
			arg++
			i++
			return
		}
		for i < len(format) && format[i] >= '0' && format[i] <= '9' {
			i++
		}
	}
	for i < len(format) {
		if format[i] != '%' {
			i++
			continue
		}
		i++
		for i < len(format) && strings.IndexByte("+-# 0", format[i]) >= 0 {
			i++
		}
		index()
		number()
		if i < len(format) && format[i] == '.' {
			i++
			index()
			number()
		}
		index()
		if i >= len(format) {
			break
		}
		verb, size := utf8.DecodeRuneInString(format[i:])
		i += size
		if verb == '%' {
			continue
		}
		out = append(out, formatOperand{verb: verb, arg: arg})
		arg++
	}
	return out
}

// checkInit finds init functions: wire dependencies explicitly in main or in
// constructors instead.
func checkInit(f *srcFile) []finding {
	var out []finding
	for _, d := range f.ast.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "init" {
			out = append(out, f.finding("init", fn.Pos(),
				"init function: no package-level wiring; construct explicitly"))
		}
	}
	return out
}

// allowPrefix starts a directive that silences one rule on its own line and
// the next: //basalt:allow RULE REASON.
const allowPrefix = "//basalt:allow"

// An allowDirective is one parsed //basalt:allow comment.
type allowDirective struct {
	rule string
	pos  token.Position
	used bool
}

// checkFile runs every rule that applies to f and returns what is left
// after //basalt:allow directives, plus findings for malformed or unused
// directives.
func checkFile(f *srcFile) []finding {
	allows, out := parseAllows(f)
	for _, r := range rules {
		if !r.applies(f) {
			continue
		}
		for _, fd := range r.check(f) {
			if !allowed(allows, fd) {
				out = append(out, fd)
			}
		}
	}
	for _, a := range allows {
		if !a.used && a.rule != "" {
			out = append(out, finding{rule: "allow", pos: a.pos,
				msg: fmt.Sprintf("%s %s silences nothing here; remove it", allowPrefix, a.rule)})
		}
	}
	return out
}

// parseAllows collects f's directives and reports malformed ones.
func parseAllows(f *srcFile) ([]*allowDirective, []finding) {
	var allows []*allowDirective
	var bad []finding
	for _, cg := range f.ast.Comments {
		for _, c := range cg.List {
			rest, ok := strings.CutPrefix(c.Text, allowPrefix)
			if !ok {
				continue
			}
			fields := strings.Fields(rest)
			switch {
			case len(fields) == 0 || !isRule(fields[0]):
				bad = append(bad, f.finding("allow", c.Pos(),
					"%s needs a rule name (one of %s)", allowPrefix, ruleNames()))
			case len(fields) < 2:
				bad = append(bad, f.finding("allow", c.Pos(), "%s %s needs a reason", allowPrefix, fields[0]))
			default:
				allows = append(allows, &allowDirective{rule: fields[0], pos: f.fset.Position(c.Pos())})
			}
		}
	}
	return allows, bad
}

// allowed reports whether a directive on fd's line or the line above
// silences fd, and marks that directive used.
func allowed(allows []*allowDirective, fd finding) bool {
	for _, a := range allows {
		if a.rule == fd.rule && (a.pos.Line == fd.pos.Line || a.pos.Line == fd.pos.Line-1) {
			a.used = true
			return true
		}
	}
	return false
}

func isRule(name string) bool {
	for _, r := range rules {
		if r.name == name {
			return true
		}
	}
	return false
}

func ruleNames() string {
	var names []string
	for _, r := range rules {
		names = append(names, r.name)
	}
	return strings.Join(names, ", ")
}

// docExempt reports whether the package in dir (slash-separated, relative
// to the repository root) needs no doc.go: binaries under cmd/ and the
// dependency-pinning package internal/deps.
func docExempt(dir string) bool {
	return dir == "cmd" || strings.HasPrefix(dir, "cmd/") || dir == "internal/deps"
}

// checkDocs checks that every package has a doc.go whose package comment
// starts "Package <name> ". files maps each directory to its parsed .go
// files. Directories with only test files or only generated files are
// exempt, as is docExempt.
func checkDocs(files map[string][]*srcFile) []finding {
	var out []finding
	for dir, fs := range files {
		if docExempt(dir) {
			continue
		}
		var doc, handWritten *srcFile
		for _, f := range fs {
			if path.Base(f.path) == "doc.go" {
				doc = f
			}
			if !f.test && !f.generated && handWritten == nil {
				handWritten = f
			}
		}
		switch {
		case handWritten == nil:
		case doc == nil:
			out = append(out, handWritten.finding("doc", handWritten.ast.Package,
				"package %s in %s has no doc.go", handWritten.ast.Name.Name, dir))
		default:
			if fd, bad := checkDocComment(doc); bad {
				out = append(out, fd)
			}
		}
	}
	return out
}

// checkDocComment reports a doc.go whose package comment is missing or does
// not start "Package <name> ".
func checkDocComment(doc *srcFile) (finding, bool) {
	name := doc.ast.Name.Name
	want := "Package " + name + " "
	if doc.ast.Doc == nil || !strings.HasPrefix(doc.ast.Doc.Text(), want) {
		return doc.finding("doc", doc.ast.Package,
			"doc.go must have a package comment starting %q", want), true
	}
	return finding{}, false
}
