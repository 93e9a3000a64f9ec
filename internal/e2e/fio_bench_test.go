package e2e_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"basalt/internal/testnet"
)

// BenchmarkNBDFio runs fio's nbd engine (libnbd, no kernel) with 4 KiB
// random writes and reads at iodepth 1 and 32 against a 256 MiB Basalt
// volume served by basalt-nbd (an MDS and three chunkservers as processes
// on this machine, three replicas), and, in the same run, against the
// single-copy references on the same disk: nbdkit's file plugin serving a
// preallocated file (writes land in the page cache; nothing is synced
// unless the client flushes), and the same file behind the fua filter in
// fuamode=force, which fdatasyncs every write before acknowledging it, as
// Basalt does on each replica. Every target is written fully once (fio,
// sequential 1 MiB) before the random jobs, so reads hit data.
//
// Each sub-benchmark runs fio once whatever b.N is, so run it with
// -benchtime 1x: each job then runs for 15 s after a 2 s ramp. A duration
// -benchtime (for example 30s) sets each job's runtime instead. With a
// count above 1x Go calls each sub-benchmark twice (N=1, then N), and fio
// runs once per call. The figures are fio's IOPS and completion-latency
// percentiles (clat, submission to completion), not ns/op.
//
//	go test -run '^$' -bench BenchmarkNBDFio -benchtime 1x -timeout 30m ./internal/e2e/
func BenchmarkNBDFio(b *testing.B) {
	const size = 256 << 20
	for _, tool := range []string{"fio", "nbdkit"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	c := startClusterWith(b, "30s") // the chunkservers' default
	c.createVolume("fio", fmt.Sprint(size))
	file := preallocatedFile(b, size)
	targets := []struct{ name, uri string }{
		{"basalt", c.startGateway(b).uri("fio")},
		{"nbdkit-file", startNBDKit(b, "file", file)},
		{"nbdkit-file-fua", startNBDKit(b, "--filter=fua", "file", file, "fuamode=force")},
	}
	for _, tg := range targets[:2] { // the two nbdkit targets share the file
		fioFill(b, tg.uri, size)
	}
	jobTime := fioRuntime()
	for _, qd := range []int{1, 32} {
		for _, tg := range targets {
			for _, rw := range []string{"randwrite", "randread"} {
				b.Run(fmt.Sprintf("%s/%s/qd=%d", tg.name, rw, qd), func(b *testing.B) {
					b.ResetTimer()
					st := runFio(b, tg.uri, rw, qd, size, jobTime)
					b.StopTimer()
					reportFio(b, st)
				})
			}
		}
	}
}

// fioRuntime is each fio job's runtime: the -benchtime duration, or 15 s
// when -benchtime is a count (1x).
func fioRuntime() time.Duration {
	f := flag.Lookup("test.benchtime")
	if f == nil || strings.HasSuffix(f.Value.String(), "x") {
		return 15 * time.Second
	}
	d, err := time.ParseDuration(f.Value.String())
	if err != nil || d <= 0 {
		return 15 * time.Second
	}
	return d
}

// preallocatedFile returns the path of a file of size random bytes in a
// temporary directory, written and fsynced, so every block is allocated.
func preallocatedFile(b *testing.B, size int64) string {
	b.Helper()
	return localFile(b, size).Name()
}

// startNBDKit starts nbdkit in the foreground on a free 127.0.0.1 port
// with args (filters, plugin and its parameters) and returns its URI. It
// is stopped with SIGTERM (SIGKILL after 10 s) when the benchmark ends,
// and exits with the test binary if that dies first.
func startNBDKit(b *testing.B, args ...string) string {
	b.Helper()
	addr := testnet.FreeAddr(b)
	host, port, _ := net.SplitHostPort(addr)
	logPath := filepath.Join(b.TempDir(), "nbdkit.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("nbdkit", append([]string{"-f", "-p", port, "-i", host, "--exit-with-parent"}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting nbdkit: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
	b.Cleanup(func() { stopNBDKit(b, cmd, exited, logPath) })
	waitFor(b, 10*time.Second, "nbdkit listening on "+addr, func() error {
		select {
		case <-exited:
			return errors.New("nbdkit exited")
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	return "nbd://" + addr + "/"
}

func stopNBDKit(b *testing.B, cmd *exec.Cmd, exited <-chan struct{}, logPath string) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		b.Errorf("nbdkit did not exit within 10s of SIGTERM; killing it")
		_ = cmd.Process.Kill()
		<-exited
	}
	if b.Failed() {
		log, _ := os.ReadFile(logPath)
		b.Logf("--- nbdkit log ---\n%s", log)
	}
}

// fioFill writes the whole export at uri once, sequentially in 1 MiB
// blocks, and flushes it.
func fioFill(b *testing.B, uri string, size int64) {
	b.Helper()
	fio(b, "--name=fill", "--ioengine=nbd", "--uri="+uri, "--rw=write", "--bs=1M",
		"--iodepth=8", fmt.Sprintf("--size=%d", size), "--end_fsync=1")
}

// fioStats is the part of one direction (read or write) of a fio job's
// JSON result that the benchmarks report.
type fioStats struct {
	IOPS     float64 `json:"iops"`
	TotalIOs int64   `json:"total_ios"`
	Clat     struct {
		Mean       float64            `json:"mean"`
		Percentile map[string]float64 `json:"percentile"`
	} `json:"clat_ns"`
}

// runFio runs one time-based fio job of 4 KiB random rw ("randwrite" or
// "randread") at iodepth qd over the first size bytes of uri and returns
// its statistics for that direction.
func runFio(b *testing.B, uri, rw string, qd int, size int64, d time.Duration) fioStats {
	b.Helper()
	out := fio(b, "--name="+rw, "--ioengine=nbd", "--uri="+uri, "--rw="+rw, "--bs=4k",
		fmt.Sprintf("--iodepth=%d", qd), fmt.Sprintf("--size=%d", size), "--norandommap",
		"--randrepeat=0", "--time_based", fmt.Sprintf("--runtime=%ds", int(d.Seconds())),
		"--ramp_time=2s", "--output-format=json")
	var res struct {
		Jobs []struct {
			Error int      `json:"error"`
			Read  fioStats `json:"read"`
			Write fioStats `json:"write"`
		} `json:"jobs"`
	}
	// fio may print notices before the JSON document.
	if i := bytes.IndexByte(out, '{'); i < 0 || json.Unmarshal(out[i:], &res) != nil || len(res.Jobs) != 1 {
		b.Fatalf("parsing fio's JSON output:\n%s", out)
	}
	job := res.Jobs[0]
	if job.Error != 0 {
		b.Fatalf("fio job failed with error %d:\n%s", job.Error, out)
	}
	if rw == "randread" {
		return job.Read
	}
	return job.Write
}

// fio runs fio with args and returns its standard output.
func fio(b *testing.B, args ...string) []byte {
	b.Helper()
	cmd := exec.Command("fio", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("fio %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// reportFio reports IOPS and completion-latency percentiles in µs.
func reportFio(b *testing.B, st fioStats) {
	if st.TotalIOs == 0 {
		b.Fatal("fio completed no I/O")
	}
	b.ReportMetric(st.IOPS, "IOPS")
	b.ReportMetric(st.Clat.Percentile["50.000000"]/1e3, "p50-µs")
	b.ReportMetric(st.Clat.Percentile["99.000000"]/1e3, "p99-µs")
	b.ReportMetric(0, "ns/op")
}
