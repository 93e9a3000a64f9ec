// Package testwait is the one place tests wait: they poll a condition
// until it holds or a deadline passes (never a bare sleep), and the
// failure says what was awaited and the condition's last error. Only test
// code imports it.
package testwait
