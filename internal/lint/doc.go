// Package lint holds Basalt's repository-wide lint rules, run as ordinary Go
// tests (go test ./internal/lint/, part of make lint and make test).
//
// The rules are the parts of STYLE.md that gofmt, go vet and staticcheck do
// not check: no os.Exit or log.Fatal outside cmd/, no errors matched by their
// message, no error formatted with %v where %w would wrap it, no init
// functions, and a doc.go in every package. They parse the repository's .go
// files with go/parser and never type-check, so a few rules are heuristics
// (an error operand is recognized by its name); see the rule definitions.
//
// A finding that is deliberate is silenced by a directive on the same line
// or the line above, naming the rule and giving a reason:
//
//	//basalt:allow errwrap the cause is internal and must not leak to callers
//
// The package has no non-test code: everything but this file is in _test.go
// files, and it touches nothing but the source tree, read-only.
package lint
