package e2e_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"basalt/internal/testnet"
	"basalt/internal/testwait"
)

// Spark for the tests is PyPI's pyspark package (a whole Spark home with
// bin/ and jars/), Spark 3.5 and Spark 4, installed into .tools by `make
// spark`; the plugin, its tests and the test jobs
// (rss/spark/src/test/.../jobs) are built by `make spark-plugin` (and
// spark4-plugin). The first test that needs a Spark line runs those
// targets, which do nothing when they are up to date.

// sparkLine is a Spark release line the plugin is built for.
type sparkLine struct {
	name   string // "spark3", "spark4"
	plugin string // the make target that builds its jars
	home   string // the make target that prints its SPARK_HOME
	target string // its jars' directory under rss/spark
}

var (
	spark3 = sparkLine{name: "spark3", plugin: "spark-plugin", home: "spark-home", target: "target"}
	spark4 = sparkLine{name: "spark4", plugin: "spark4-plugin", home: "spark4-home", target: "target/spark4"}
)

// sparkTools is where a Spark line, Java 17 and the jars are.
type sparkTools struct {
	home     string // SPARK_HOME
	javaHome string
	plugin   string // basalt-rss-spark.jar
	jobs     string // basalt-rss-spark-tests.jar
}

// sparkShared holds the standalone Spark cluster of each line the tests
// submit to, started by the first test that needs it and stopped after
// the last (runMain). A line whose start failed is not tried again.
var sparkShared struct {
	mu       sync.Mutex
	clusters map[string]*sparkCluster
	failed   map[string]bool
}

// findSparkTools makes sure the line's Spark and jars exist (make spark
// and its plugin target) and finds a Java 17.
func findSparkTools(line sparkLine) (*sparkTools, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	mk := exec.Command("make", "--no-print-directory", "-C", root, "spark", line.plugin)
	if out, err := mk.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("make spark %s: %w\n%s", line.plugin, err, out)
	}
	out, err := exec.Command("make", "--no-print-directory", "-s", "-C", root, line.home).Output()
	if err != nil {
		return nil, fmt.Errorf("make %s: %w", line.home, err)
	}
	javaHome, err := java17()
	if err != nil {
		return nil, err
	}
	target := filepath.Join(root, "rss", "spark", line.target)
	return &sparkTools{
		home: strings.TrimSpace(string(out)), javaHome: javaHome,
		plugin: filepath.Join(target, "basalt-rss-spark.jar"), jobs: filepath.Join(target, "basalt-rss-spark-tests.jar"),
	}, nil
}

// java17 returns the home of a Java 17 (Spark 3.5 runs on 8, 11 and 17):
// $BASALT_JAVA_HOME, Debian's openjdk-17, or $JAVA_HOME.
func java17() (string, error) {
	for _, home := range []string{os.Getenv("BASALT_JAVA_HOME"), "/usr/lib/jvm/java-17-openjdk-amd64", os.Getenv("JAVA_HOME")} {
		if home == "" {
			continue
		}
		out, err := exec.Command(filepath.Join(home, "bin", "java"), "-version").CombinedOutput()
		if err == nil && bytes.Contains(out, []byte(`version "17.`)) {
			return home, nil
		}
	}
	return "", errors.New("no Java 17 found: install openjdk-17-jdk-headless or set BASALT_JAVA_HOME")
}

// sparkCluster is a standalone Spark master on 127.0.0.1 and two workers
// on 127.0.0.2 and 127.0.0.3 with one core and 1 GiB each: real executor
// JVMs on two hosts (Spark runs a speculative copy only on another host
// than the original attempt; local-cluster mode has one host).
type sparkCluster struct {
	tools  *sparkTools
	dir    string
	master string // spark://host:port
	ui     string // the master's web UI, host:port
	procs  []*exec.Cmd
}

// spark returns the shared Spark 3.5 cluster, starting it on first use.
func spark(t testing.TB) *sparkCluster { return sparkOf(t, spark3) }

// sparkOf returns the shared cluster of a Spark line, starting it on
// first use.
func sparkOf(t testing.TB, line sparkLine) *sparkCluster {
	t.Helper()
	sparkShared.mu.Lock()
	defer sparkShared.mu.Unlock()
	if sparkShared.clusters == nil {
		sparkShared.clusters, sparkShared.failed = map[string]*sparkCluster{}, map[string]bool{}
	}
	if c := sparkShared.clusters[line.name]; c != nil {
		return c
	}
	if sparkShared.failed[line.name] {
		t.Fatalf("%s did not start (see the first test that needed it)", line.name)
	}
	sparkShared.failed[line.name] = true // until it is up
	c := startSpark(t, line)
	sparkShared.clusters[line.name] = c
	delete(sparkShared.failed, line.name)
	return c
}

// stopSharedSpark stops the shared clusters.
func stopSharedSpark() {
	sparkShared.mu.Lock()
	defer sparkShared.mu.Unlock()
	for name, c := range sparkShared.clusters {
		c.stop()
		delete(sparkShared.clusters, name)
	}
}

// startSpark starts a line's master and two workers and waits until the
// master lists both; on failure it stops what it started (when t ends)
// and fails t.
func startSpark(t testing.TB, line sparkLine) *sparkCluster {
	t.Helper()
	tools, err := findSparkTools(line)
	if err != nil {
		t.Fatalf("%s: %v", line.name, err)
	}
	dir, err := os.MkdirTemp("", "basalt-"+line.name+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "conf"), 0o755); err != nil { // no spark-defaults.conf
		t.Fatal(err)
	}
	masterAddr, uiAddr := testnet.FreeAddr(t), testnet.FreeAddr(t)
	host, port, _ := strings.Cut(masterAddr, ":")
	_, uiPort, _ := strings.Cut(uiAddr, ":")
	c := &sparkCluster{tools: tools, dir: dir, master: "spark://" + masterAddr, ui: uiAddr}
	up := false
	t.Cleanup(func() {
		if !up {
			c.stop()
		}
	})
	c.daemon(t, "master", host, "org.apache.spark.deploy.master.Master", "--host", host, "--port", port, "--webui-port", uiPort)
	for _, w := range []string{"127.0.0.2", "127.0.0.3"} {
		c.daemon(t, "worker-"+w, w, "org.apache.spark.deploy.worker.Worker", "--host", w, "--port", "0",
			"--webui-port", "0", "--cores", "1", "--memory", "1g", "--work-dir", filepath.Join(dir, "work-"+w), c.master)
	}
	testwait.For(t, 90*time.Second, line.name+" master lists 2 alive workers (logs in "+dir+")", func() error {
		alive, err := c.aliveWorkers()
		if err == nil && alive != 2 {
			err = fmt.Errorf("%d alive", alive)
		}
		return err
	})
	up = true
	return c
}

// env returns the environment of Spark processes bound to host.
func (c *sparkCluster) env(host string) []string {
	return append(os.Environ(), "SPARK_HOME="+c.tools.home, "JAVA_HOME="+c.tools.javaHome,
		"SPARK_LOCAL_IP="+host, "SPARK_CONF_DIR="+filepath.Join(c.dir, "conf"), "SPARK_LOG_DIR="+c.dir)
}

// daemon starts a Spark daemon class with spark-class.
func (c *sparkCluster) daemon(t testing.TB, name, host, class string, args ...string) {
	t.Helper()
	f, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(c.tools.home, "bin", "spark-class"), append([]string{class}, args...)...)
	cmd.Env, cmd.Stdout, cmd.Stderr = c.env(host), f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stop() ends its executors too
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Spark %s: %v", name, err)
	}
	c.procs = append(c.procs, cmd)
}

// aliveWorkers returns how many alive workers the master lists.
func (c *sparkCluster) aliveWorkers() (int, error) {
	resp, err := http.Get("http://" + c.ui + "/json/")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		AliveWorkers int `json:"aliveworkers"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st.AliveWorkers, err
}

// stop ends the daemons (and any executor they run): SIGTERM to each
// process group, SIGKILL after 20 seconds.
func (c *sparkCluster) stop() {
	for _, p := range c.procs {
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
	}
	for _, p := range c.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	_ = os.RemoveAll(c.dir)
}

// sparkJob is one spark-submit of rss/spark's test jobs (Jobs.java).
type sparkJob struct {
	job  string   // suite, pause, speculate, dynamic, bench
	args []string // after the output directory
	conf []string // extra key=value settings
	// rss is the shuffle service the job uses; nil runs it with Spark's
	// own shuffle.
	rss *rssCluster
}

// sparkApp is a running spark-submit.
type sparkApp struct {
	t     testing.TB
	c     *sparkCluster
	out   string // the job's output directory (result.json)
	log   string
	start time.Time
	cmd   *exec.Cmd
	done  chan struct{}
}

// submit starts job in the background.
func (c *sparkCluster) submit(t testing.TB, job sparkJob) *sparkApp {
	t.Helper()
	out := t.TempDir()
	args := []string{"--master", c.master, "--deploy-mode", "client", "--class", "io.basalt.rss.jobs.Jobs"}
	conf := []string{
		"spark.driver.host=127.0.0.1", "spark.driver.bindAddress=127.0.0.1", "spark.ui.enabled=false",
		"spark.executor.memory=1g", "spark.executor.cores=1", "spark.driver.memory=1g",
		"spark.serializer=org.apache.spark.serializer.KryoSerializer",
		// Tasks start once both executors are up, so both run map tasks.
		"spark.scheduler.minRegisteredResourcesRatio=1.0", "spark.scheduler.maxRegisteredResourcesWaitingTime=120s",
	}
	if job.rss != nil {
		conf = append(conf, rssConf(c.tools.plugin, job.rss.masterRPC)...)
	}
	for _, kv := range append(conf, job.conf...) {
		args = append(args, "--conf", kv)
	}
	args = append(append(args, c.tools.jobs, job.job, out), job.args...)
	a := &sparkApp{t: t, c: c, out: out, log: filepath.Join(out, "spark-submit.log"), start: time.Now(), done: make(chan struct{})}
	f, err := os.Create(a.log)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(filepath.Join(c.tools.home, "bin", "spark-submit"), args...)
	a.cmd.Env, a.cmd.Stdout, a.cmd.Stderr = c.env("127.0.0.1"), f, f
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("spark-submit: %v", err)
	}
	go func() { _ = a.cmd.Wait(); f.Close(); close(a.done) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		<-a.done
	})
	return a
}

// rssConf is what a user adds to spark-submit to use the Basalt RSS.
func rssConf(plugin, masters string) []string {
	return []string{
		"spark.driver.extraClassPath=" + plugin, "spark.executor.extraClassPath=" + plugin,
		"spark.shuffle.manager=io.basalt.rss.spark.BasaltShuffleManager",
		"spark.shuffle.sort.io.plugin.class=io.basalt.rss.spark.BasaltShuffleDataIO",
		"spark.basalt.rss.masters=" + masters,
	}
}

// sparkStats is what Jobs.java's listener counted (Stats.java).
type sparkStats struct {
	MapTasksEnded       int      `json:"map_tasks_ended"`
	MapTasksSucceeded   int      `json:"map_tasks_succeeded"`
	ResultTasksEnded    int      `json:"result_tasks_ended"`
	FetchFailures       int      `json:"fetch_failures"`
	StageReruns         int      `json:"stage_reruns"`
	SpeculativeLaunched int      `json:"speculative_launched"`
	ExecutorsRemoved    int      `json:"executors_removed"`
	MemorySpilled       int64    `json:"memory_spilled"`
	ShuffleBytesWritten int64    `json:"shuffle_bytes_written"`
	ShuffleBytesRead    int64    `json:"shuffle_bytes_read"`
	ShuffleRecordsRead  int64    `json:"shuffle_records_read"`
	ShuffleRecordsWrote int64    `json:"shuffle_records_written"`
	ShuffleWriteNanos   int64    `json:"shuffle_write_nanos"`
	Stages              []string `json:"stages"`
}

// sparkResult is a job's result.json.
type sparkResult struct {
	Millis int64      `json:"millis"`
	Stats  sparkStats `json:"stats"`
	// jobs holds each job's own fields (checksum, exact, ...), by name.
	jobs map[string]json.RawMessage
}

// jobResult is the part of a job's result every job has.
type jobResult struct {
	Checksum string `json:"checksum"`
	Exact    bool   `json:"exact"`
	Millis   int64  `json:"millis"`
}

// job decodes the result of job name into v.
func (r sparkResult) job(t testing.TB, name string, v any) {
	t.Helper()
	raw, ok := r.jobs[name]
	if !ok {
		t.Fatalf("result.json has no %q", name)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
}

// wait waits for the application to end (within 5 minutes), fails the
// test with its log when it failed, and returns its result.
func (a *sparkApp) wait() sparkResult {
	a.t.Helper()
	if err := a.exit(5 * time.Minute); err != nil {
		a.dumpLogs()
		a.t.Fatalf("spark-submit %s: %v", filepath.Base(a.out), err)
	}
	b, err := os.ReadFile(filepath.Join(a.out, "result.json"))
	if err != nil {
		a.dumpLogs()
		a.t.Fatal(err)
	}
	var r sparkResult
	if err := json.Unmarshal(b, &r); err != nil {
		a.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r.jobs); err != nil {
		a.t.Fatal(err)
	}
	return r
}

// exit waits for spark-submit to end and returns its failure, if any.
func (a *sparkApp) exit(timeout time.Duration) error {
	select {
	case <-a.done:
	case <-time.After(timeout):
		_ = a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("still running after %v", timeout)
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("exit status %d", code)
	}
	return nil
}

// dumpLogs logs the tail of the driver's log and of the executors' logs
// of applications started since this one.
func (a *sparkApp) dumpLogs() {
	tail := func(path string) {
		b, _ := os.ReadFile(path)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		a.t.Logf("--- %s (tail) ---\n%s", path, b)
	}
	tail(a.log)
	_ = filepath.WalkDir(a.c.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "stderr" {
			if info, err := d.Info(); err == nil && info.ModTime().After(a.start) {
				tail(path)
			}
		}
		return nil
	})
}

// pauseDir returns a directory for the pause job's rendezvous (Pause.java).
func pauseDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitPaused waits until a task of the pause job has written its marker
// and returns the process id of that task's executor.
func waitPaused(t testing.TB, a *sparkApp, dir string) int {
	t.Helper()
	var pid int
	testwait.For(t, 3*time.Minute, "a reduce task paused", func() error {
		select {
		case <-a.done:
			a.dumpLogs()
			t.Fatalf("the job ended before a reduce task paused")
		default:
		}
		ms, _ := filepath.Glob(filepath.Join(dir, "task-*.pid"))
		if len(ms) == 0 {
			return errors.New("no marker yet")
		}
		b, err := os.ReadFile(ms[0])
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return pid
}

// resume lets the paused tasks go on (and later ones not pause).
func resume(t testing.TB, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// killExecutor kills an executor JVM with SIGKILL, as a node losing it
// (eviction, OOM killer) would.
func killExecutor(t testing.TB, pid int) {
	t.Helper()
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("CoarseGrainedExecutorBackend")) {
		t.Fatalf("process %d is not a Spark executor (%v)", pid, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}
