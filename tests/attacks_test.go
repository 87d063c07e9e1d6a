package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// The attack suite (make test-security): each entry runs one real attack from a pod,
// an image or a pod spec against a live daemon on the shipped configuration (plus
// what the attack's setup says a site would add, and why), and asserts that the
// attacker got nothing and that the host did not change: a canary directory, the
// runtime's binary and every container bundle are checksummed before and after.
// A new attack is one more entry.
var attacks = []attack{
	{name: "working directory through an inherited descriptor (CVE-2024-21626)", run: attackWorkdirDescriptor},
	{name: "host through the shared PID holder", run: attackPIDHolder},
	{name: "shim sockets from a host-network pod (CVE-2020-15257)", run: attackShimSockets},
	{name: "hooks with the pod's HOME and the image's symlinks", run: attackHooks},
	{name: "runtime binary through /proc/self/exe (CVE-2019-5736)", run: attackRuntimeBinary},
	{name: "unbounded exec output", run: attackExecOutput},
	{name: "session keyring of another pod", run: attackKeyring},
	{name: "variables injected through a newline", run: attackEnvNewline},
	{name: "descriptors the daemon inherited", run: attackInheritedFds},
	{name: "exec too large for an environment variable", run: attackLargeExec},
	{name: "seccomp profile that blocks or floods", run: attackSeccompProfile},
	{name: "gzip bomb layer", config: func(*testing.T) string { return gzipBombConfig }, run: attackGzipBomb},
	{name: "pull that fills the disk", run: attackFullDisk},
	{name: "GPUs and Enroot knobs from the environment", run: attackEnvKnobs},
	// A site whose Slurm jobs run the store's images through pyxis shares them.
	{name: "job links of the pyxis importer", config: func(*testing.T) string { return shareWithJobs }, run: attackJobLinks},
	{name: "requests to the image socket", run: attackImageSocket},
}

type attack struct {
	name string
	// config is daemon configuration the attack needs beyond the shipped defaults,
	// with a comment saying why a site would have it.
	config func(t *testing.T) string
	run    func(t *testing.T, a *arena)
}

// arena is a daemon on the shipped configuration with a hostile image, and a canary
// directory on the host the attacks aim at.
type arena struct {
	*podEnv
	hostile string // image with the attacker tool at /bin/attacker
	canary  string
}

func TestAttacks(t *testing.T) {
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			config := ""
			if at.config != nil {
				config = at.config(t)
			}
			a := newArena(t, config)
			before := a.hostState(t)
			at.run(t, a)
			a.assertHostUnchanged(t, before)
		})
	}
}

func newArena(t *testing.T, config string) *arena {
	t.Helper()
	hostUser(t, "ecri-test", testUID)
	a := &arena{podEnv: newPodEnvWith(t, config), canary: siteDir(t)}
	writeFiles(t, a.canary, map[string]string{"secret": "host data\n"})
	a.hostile = a.pushImage(t, "test/hostile:1", v1.Config{Env: []string{"PATH=/bin"}}, nil)
	return a
}

// pushImage pushes busybox with the attacker tool, extra entries and cfg, pulls it and
// returns its name.
func (a *arena) pushImage(t *testing.T, name string, cfg v1.Config, extra []testregistry.Entry) string {
	t.Helper()
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	tool, err := os.ReadFile(attackerBinary(t))
	require.NoError(t, err)
	entries = append(entries, testregistry.Entry{Name: "bin/attacker", Body: string(tool), Mode: 0o755})
	entries = append(entries, extra...)
	l, err := testregistry.Layer(entries, testregistry.Gzip, false)
	require.NoError(t, err)
	img, err := testregistry.Image(cfg, false, l)
	require.NoError(t, err)
	_, err = a.reg.Push(name, img)
	require.NoError(t, err)
	ref := a.reg.Host + "/" + name
	_, err = a.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	require.NoError(t, err)
	return ref
}

var attackerOnce struct {
	sync.Once
	path string
	err  error
}

// attackerBinary builds tests/cmd/attacker, statically, once.
func attackerBinary(t *testing.T) string {
	t.Helper()
	attackerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "attacker-")
		if err != nil {
			attackerOnce.err = err
			return
		}
		attackerOnce.path = filepath.Join(dir, "attacker")
		cmd := exec.Command("go", "build", "-o", attackerOnce.path, "./cmd/attacker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			attackerOnce.err = fmt.Errorf("build the attacker: %w: %s", err, out)
		}
	})
	require.NoError(t, attackerOnce.err)
	return attackerOnce.path
}

// hostState checksums what an attacker must not change: the canary directory and
// the runtime's binary.
func (a *arena) hostState(t *testing.T) map[string]string {
	t.Helper()
	state := map[string]string{}
	sum := func(p string) {
		if data, err := os.ReadFile(p); err == nil {
			h := sha256.Sum256(data)
			state[p] = hex.EncodeToString(h[:])
		} else {
			state[p] = "unreadable"
		}
	}
	_ = filepath.WalkDir(a.canary, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			sum(p)
		}
		return nil
	})
	sum(enrootCRI)
	return state
}

// assertHostUnchanged compares the host with before, and checks that every bundle,
// which decides the container's execs, is still root's, closed and the daemon's own.
func (a *arena) assertHostUnchanged(t *testing.T, before map[string]string) {
	t.Helper()
	after := a.hostState(t)
	for p, sum := range before {
		assert.Equal(t, sum, after[p], "%s changed", p)
	}
	for p := range after {
		_, ok := before[p]
		assert.True(t, ok, "%s appeared", p)
	}
	configs, _ := filepath.Glob(filepath.Join(a.dir, "state", "containers", "*", "config.json"))
	for _, c := range configs {
		data, err := os.ReadFile(c)
		require.NoError(t, err)
		assert.True(t, json.Valid(data), "%s is not the daemon's JSON", c)
		var st syscall.Stat_t
		require.NoError(t, syscall.Stat(filepath.Dir(c), &st))
		assert.Equal(t, uint32(0), st.Uid, "a bundle stays root's: %s", c)
		assert.Equal(t, uint32(0o700), st.Mode&0o777, "and closed: %s", c)
	}
}

// run runs sh -c script in a new container of pod and returns its output and code.
func (a *arena) run(t *testing.T, pod string, cfg *runtimeapi.PodSandboxConfig, c *runtimeapi.ContainerConfig) (string, int32) {
	t.Helper()
	if c.Image == nil {
		c.Image = &runtimeapi.ImageSpec{Image: a.hostile}
	}
	if c.LogPath == "" {
		c.LogPath = c.Metadata.Name + ".log"
	}
	id := a.create(t, pod, cfg, c)
	_, err := a.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	st := a.waitExited(t, id)
	return strings.Join(lines(a.crictl(t, "logs", id)), "\n"), st.ExitCode
}

func sh(name, script string, sc *runtimeapi.LinuxContainerSecurityContext) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Command: []string{"/bin/sh", "-c", script}, Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc}}
}

func asRoot() *runtimeapi.LinuxContainerSecurityContext {
	return &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 0}}
}

func usernsPod(c *runtimeapi.PodSandboxConfig) {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 200000, Length: 65536}}
	c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}}}
}

// The working directory of a container's command names one of the runtime's
// descriptors: the command must not start in the host's bundle, and the bundle (which
// decides every exec) must stay root's.
func attackWorkdirDescriptor(t *testing.T, a *arena) {
	escape := `pwd; ls; echo pwned > config.json; echo pwned > escaped`
	pods := map[string]struct {
		handler string
		mutate  func(*runtimeapi.PodSandboxConfig)
		sc      *runtimeapi.LinuxContainerSecurityContext
	}{
		"userns":      {"", usernsPod, asRoot()},
		"enroot-root": {"enroot", nil, nil},
		"enroot-user": {"enroot", nil, &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: testUID}}},
	}
	fromImage := a.pushImage(t, "test/fd-workdir:1", v1.Config{Env: []string{"PATH=/bin"}, WorkingDir: "/proc/self/fd/5"}, nil)
	for name, p := range pods {
		cfg := a.podConfig("fd-"+name, p.mutate)
		pod := a.runPodWith(t, cfg, p.handler)
		for fd := 3; fd <= 8; fd++ {
			c := sh(fmt.Sprintf("fd%d", fd), escape, p.sc)
			c.WorkingDir = fmt.Sprintf("/proc/self/fd/%d", fd)
			a.tryEscape(t, pod, cfg, c)
		}
		c := sh("image-workdir", escape, p.sc)
		c.Image = &runtimeapi.ImageSpec{Image: fromImage}
		a.tryEscape(t, pod, cfg, c)
	}
	bundles, err := filepath.Glob(filepath.Join(a.dir, "state", "containers", "*"))
	require.NoError(t, err)
	for _, b := range bundles {
		assert.NoFileExists(t, filepath.Join(b, "escaped"), "the command wrote into its bundle")
	}
}

// tryEscape creates and starts c: it may be refused, fail to start, or run inside its
// root, but never in the bundle.
func (a *arena) tryEscape(t *testing.T, pod string, cfg *runtimeapi.PodSandboxConfig, c *runtimeapi.ContainerConfig) {
	t.Helper()
	c.Image = cmpImage(c.Image, a.hostile)
	c.LogPath = c.Metadata.Name + ".log"
	resp, err := a.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: c})
	if err != nil {
		assert.Regexp(t, "outside the container's root|not a directory|working directory", err.Error(), c.Metadata.Name)
		return
	}
	if _, err := a.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		return
	}
	a.waitExited(t, resp.ContainerId)
	out := a.crictl(t, "logs", resp.ContainerId)
	assert.NotContains(t, out, "shim.pid", "%s listed its bundle", c.Metadata.Name)
	assert.NotContains(t, out, "init.pid", "%s listed its bundle", c.Metadata.Name)
}

func cmpImage(img *runtimeapi.ImageSpec, def string) *runtimeapi.ImageSpec {
	if img == nil {
		return &runtimeapi.ImageSpec{Image: def}
	}
	return img
}

// A container with SYS_PTRACE (kubectl debug --profile=general) in a pod with a shared
// PID namespace looks at the host through PID 1.
func attackPIDHolder(t *testing.T, a *arena) {
	cfg := a.podConfig("pidholder", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}}
	})
	pod := a.runPod(t, cfg)
	sc := asRoot()
	sc.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}
	sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_PTRACE"}}
	out, _ := a.run(t, pod, cfg, sh("debug", `/bin/attacker peek-root; readlink /proc/1/exe`, sc))
	assert.Contains(t, out, "root entries 0", "PID 1's root is empty")
	assert.NotContains(t, out, "ENTRY")
	assert.NotContains(t, out, "WROTE")
	assert.Contains(t, out, "Uid: 65534 65534 65534 65534", "PID 1 is nobody")
	assert.Contains(t, out, "CapEff: 0000000000000000")
	assert.Contains(t, out, "CapBnd: 0000000000000000")
	assert.Contains(t, out, "NoNewPrivs: 1")
	assert.Contains(t, out, "/memfd:", "PID 1 runs from the sealed copy")
}

// A non-privileged host-network pod running as root attaches to another pod's
// privileged container through its shim.
func attackShimSockets(t *testing.T, a *arena) {
	vcfg := a.podConfig("victim", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	})
	vpod := a.runPod(t, vcfg)
	vsc := asRoot()
	vsc.Privileged = true
	victim := sh("victim", `cat`, vsc)
	victim.Image, victim.LogPath, victim.Stdin = &runtimeapi.ImageSpec{Image: a.hostile}, "victim.log", true
	vid := a.create(t, vpod, vcfg, victim)
	_, err := a.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: vid})
	require.NoError(t, err)

	hcfg := a.podConfig("hostnet", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	})
	hpod := a.runPod(t, hcfg)
	out, code := a.run(t, hpod, hcfg, sh("attacker", `/bin/attacker unix-sockets; ls /run/enroot-cri 2>&1 | head -3`, asRoot()))
	require.Equal(t, int32(0), code, out)
	assert.NotContains(t, out, "REACHED", "a shim answered a host-network pod")
	assert.NotContains(t, a.logText(t, vid), "attach", "input reached the victim")
}

// Enroot's stock 10-home.sh binds $HOME, and a hook writes under $ENROOT_ROOTFS: a pod
// sets HOME to a host directory and its image links /etc/passwd to a host file.
func attackHooks(t *testing.T, a *arena) {
	site := siteDir(t)
	writeFiles(t, site, map[string]string{
		"enroot.conf": "ENROOT_MOUNT_HOME y\n",
		// Enroot's 10-home.sh, as it binds the caller's home.
		"hooks.d/10-home.sh": `#!/bin/sh
set -eu
[ -n "${ENROOT_MOUNT_HOME-}" ] || exit 0
echo "${HOME} ${HOME} none x-create=dir,bind,rw,nosuid" >> "${ENROOT_MOUNTS}"
echo "HOME=${HOME}" >> "${ENROOT_ENVIRON}"
`,
		// What 10-shadow.sh does to the image's files.
		"hooks.d/10-shadow.sh": "#!/bin/sh\necho 'ecri-test:x:5001:5001::/home/ecri-test:/bin/sh' >> \"$ENROOT_ROOTFS/etc/passwd\" || true\n",
	})
	a.restartWith(t, fmt.Sprintf("[runtimes.hooked]\nkind = \"enroot\"\nenroot_config_dir = %q\n", site))
	evil := a.pushImage(t, "test/symlinks:1", v1.Config{Env: []string{"PATH=/bin"}}, []testregistry.Entry{
		{Name: "etc/passwd", Type: tar.TypeSymlink, Linkname: filepath.Join(a.canary, "secret")},
	})
	cfg := a.podConfig("hooked", nil)
	pod := a.runPodWith(t, cfg, "hooked")
	// As the node user 5001, whose home exists (a root pod is mapped to nobody, whose
	// home does not: with ENROOT_MOUNT_HOME, as under Enroot, 10-home.sh fails there).
	for _, sc := range []*runtimeapi.LinuxContainerSecurityContext{{RunAsUser: &runtimeapi.Int64Value{Value: testUID}}} {
		name := "user"
		c := sh("home-"+name, `echo "HOME=$HOME"; ls `+a.canary+` 2>&1; echo pwned > `+a.canary+`/x 2>&1; cat /etc/passwd 2>&1`, sc)
		c.Image = &runtimeapi.ImageSpec{Image: evil}
		c.Envs = []*runtimeapi.KeyValue{{Key: "HOME", Value: []byte(a.canary)}}
		out, _ := a.run(t, pod, cfg, c)
		assert.Contains(t, out, "HOME=/home/ecri-test", "%s: HOME is the user's, not the pod's", name)
		assert.NotContains(t, out, "secret", "%s: the canary directory is visible", name)
		assert.NotContains(t, out, "host data", "%s: the host file was read", name)
	}
	_, err := os.Stat(filepath.Join(a.canary, "x"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// restartWith restarts the arena's daemon with more configuration.
func (a *arena) restartWith(t *testing.T, extra string) {
	t.Helper()
	require.NoError(t, a.stop(t))
	cfg, err := os.ReadFile(a.config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(a.config, append(cfg, "\n"+extra...), 0o644))
	a.start(t)
}

// A container replaces a binary with a script whose interpreter is /proc/self/exe
// and watches for a process of the runtime's binary it can write through /proc.
func attackRuntimeBinary(t *testing.T, a *arena) {
	for _, p := range []struct {
		name, handler string
		sc            *runtimeapi.LinuxContainerSecurityContext
	}{{"kubernetes", "", func() *runtimeapi.LinuxContainerSecurityContext {
		sc := asRoot()
		sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_PTRACE"}}
		return sc
	}()}, {"enroot", "enroot", nil}} {
		cfg := a.podConfig("exe-"+p.name, nil)
		pod := a.runPodWith(t, cfg, p.handler)
		c := sh("hunter", `printf '#!/proc/self/exe\n' > /bin/probe; chmod 755 /bin/probe; exec /bin/attacker exe-hunt 6`, p.sc)
		c.Image, c.LogPath = &runtimeapi.ImageSpec{Image: a.hostile}, "hunter.log"
		id := a.create(t, pod, cfg, c)
		_, err := a.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
		require.NoError(t, err)
		deadline := time.Now().Add(4 * time.Second)
		for time.Now().Before(deadline) {
			_, _ = a.runtime.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/bin/probe"}, Timeout: 5})
			_, _ = a.runtime.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: 5})
		}
		a.waitExited(t, id)
		out := a.logText(t, id)
		assert.Contains(t, out, "hunt over", p.name)
		assert.NotContains(t, out, "HOST-BINARY", "%s: a process of the host's binary was in reach", p.name)
		assert.NotContains(t, out, "WROTE", "%s: the runtime's binary was writable", p.name)
	}
}

// startSleeper starts a root container of the hostile image that sleeps, for execs.
func (a *arena) startSleeper(t *testing.T, pod string, cfg *runtimeapi.PodSandboxConfig, name string) string {
	t.Helper()
	c := sh(name, "exec sleep 1000", asRoot())
	c.Image, c.LogPath = &runtimeapi.ImageSpec{Image: a.hostile}, name+".log"
	id := a.create(t, pod, cfg, c)
	_, err := a.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	return id
}

// An exec prints a gigabyte; the daemon keeps at most its cap of it.
func attackExecOutput(t *testing.T, a *arena) {
	cfg := a.podConfig("flood", nil)
	pod := a.runPod(t, cfg)
	id := a.startSleeper(t, pod, cfg, "flood")
	before := rssOf(t, a.cmd.Process.Pid)
	resp, err := a.runtime.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id,
		Cmd: []string{"head", "-c", "1000000000", "/dev/zero"}, Timeout: 120}, grpc.MaxCallRecvMsgSize(64<<20))
	require.NoError(t, err)
	assert.Less(t, len(resp.Stdout), 16<<20, "the output is cut below the kubelet's 16 MiB message limit")
	assert.Greater(t, len(resp.Stdout), 4<<20)
	after := rssOf(t, a.cmd.Process.Pid)
	assert.Less(t, after-before, int64(256<<20), "the daemon grew from %d to %d bytes", before, after)
}

func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// A key one pod adds to its session keyring is not in another pod's, though the
// daemon has a session keyring (systemd gives each service one).
func attackKeyring(t *testing.T, a *arena) {
	require.NoError(t, a.stop(t))
	a.wrapper = []string{attackerBinary(t), "with-session-keyring"}
	a.start(t)
	acfg, bcfg := a.podConfig("keys-a", nil), a.podConfig("keys-b", nil)
	apod, bpod := a.runPod(t, acfg), a.runPod(t, bcfg)
	out, code := a.run(t, apod, acfg, sh("adder", `/bin/attacker keyring add stolen s3cret && sleep 1`, asRoot()))
	require.Equal(t, int32(0), code, out)
	out, _ = a.run(t, bpod, bcfg, sh("finder", `/bin/attacker keyring find stolen`, asRoot()))
	assert.Contains(t, out, "not found")
	assert.NotContains(t, out, "FOUND")
}

// A value with a newline must not become a variable of its own through the hooks'
// environment file.
func attackEnvNewline(t *testing.T, a *arena) {
	site := siteDir(t)
	writeFiles(t, site, map[string]string{"hooks.d/10-noop.sh": "#!/bin/sh\ntrue\n"})
	a.restartWith(t, fmt.Sprintf("[runtimes.hooked]\nkind = \"enroot\"\nenroot_config_dir = %q\n", site))
	for _, handler := range []string{"", "hooked"} {
		cfg := a.podConfig("newline-"+handler, nil)
		pod := a.runPodWith(t, cfg, handler)
		c := sh("env", `/bin/attacker getenv LD_PRELOAD; /bin/attacker getenv FOO`, nil)
		c.Envs = []*runtimeapi.KeyValue{{Key: "FOO", Value: []byte("x\nLD_PRELOAD=/nonexistent.so")}}
		out, _ := a.run(t, pod, cfg, c)
		assert.Contains(t, out, "LD_PRELOAD set=false", handler)
		assert.Contains(t, out, `FOO set=true value="x\nLD_PRELOAD=/nonexistent.so"`, handler)
	}
}

// The daemon was started with a descriptor open (a careless service manager); no
// container process gets it.
func attackInheritedFds(t *testing.T, a *arena) {
	secret, err := os.Open(filepath.Join(a.canary, "secret"))
	require.NoError(t, err)
	defer secret.Close()
	require.NoError(t, a.stop(t))
	a.inherit = []*os.File{secret, secret, secret, secret, secret, secret} // descriptors 3 to 8
	a.start(t)
	for _, handler := range []string{"", "enroot"} {
		cfg := a.podConfig("fds-"+handler, nil)
		pod := a.runPodWith(t, cfg, handler)
		c := sh("fds", `/bin/attacker fds; exec sleep 1000`, nil)
		c.Image, c.LogPath = &runtimeapi.ImageSpec{Image: a.hostile}, "fds.log"
		id := a.create(t, pod, cfg, c)
		_, err := a.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
		require.NoError(t, err)
		poll(t, func() bool { return strings.Contains(a.logText(t, id), "fds listed") }, 10*time.Second, 50*time.Millisecond)
		assert.NotContains(t, a.logText(t, id), "INHERITED", handler)
		resp, err := a.runtime.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/bin/attacker", "fds"}})
		require.NoError(t, err)
		assert.Contains(t, string(resp.Stdout), "fds listed", "%s: %s", handler, resp.Stderr)
		assert.NotContains(t, string(resp.Stdout), "INHERITED", "%s: exec", handler)
	}
}

// An exec whose description is larger than one environment variable may be (128 KiB)
// still runs.
func attackLargeExec(t *testing.T, a *arena) {
	cfg := a.podConfig("bigexec", nil)
	pod := a.runPod(t, cfg)
	id := a.startSleeper(t, pod, cfg, "sleeper")
	args := []string{"/bin/sh", "-c", `echo $#`, "sh"}
	for i := 0; i < 3000; i++ {
		args = append(args, strings.Repeat("a", 100))
	}
	resp, err := a.runtime.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: args})
	require.NoError(t, err)
	assert.Equal(t, "3000\n", string(resp.Stdout), string(resp.Stderr))
}

// A Localhost seccomp profile that is a FIFO (it would block the create) or a huge
// file is refused at once.
func attackSeccompProfile(t *testing.T, a *arena) {
	dir := t.TempDir()
	fifo, huge := filepath.Join(dir, "fifo.json"), filepath.Join(dir, "huge.json")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	require.NoError(t, os.WriteFile(huge, bytes.Repeat([]byte(" "), 2<<20), 0o644))
	cfg := a.podConfig("seccomp", nil)
	pod := a.runPod(t, cfg)
	for _, ref := range []string{fifo, huge} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c := sh("p", "true", &runtimeapi.LinuxContainerSecurityContext{
			Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}})
		c.Image = &runtimeapi.ImageSpec{Image: a.hostile}
		_, err := a.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: c})
		cancel()
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "%s: %v", ref, err)
	}
}

// gzipBombConfig bounds pulls below the bomb: a site sets max_image_bytes to what its
// largest images need (the default, 256 GiB, fits 30 GB AI images and more).
const gzipBombConfig = "[images]\nmax_image_bytes = 1073741824 # sites size this to their images\n"

// A 2 MiB layer that unpacks to 2 GiB stops at the bound and leaves nothing.
func attackGzipBomb(t *testing.T, a *arena) {
	var layer bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&layer, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	const size = 2 << 30
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}))
	_, err := io.CopyN(tw, zeroReader{}, size)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	bomb, err := gzipLayer(layer.Bytes())
	require.NoError(t, err)
	img, err := testregistry.Image(v1.Config{Cmd: []string{"/zeros"}}, false, bomb)
	require.NoError(t, err)
	_, err = a.reg.Push("test/bomb:1", img)
	require.NoError(t, err)
	_, err = a.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: a.reg.Host + "/test/bomb:1"}})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	assert.ErrorContains(t, err, "images.max_image_bytes")
	left, _ := os.ReadDir(filepath.Join(a.dir, "root", "tmp"))
	assert.Empty(t, left, "the pull left files in root/tmp")
}

// fullDiskConfig asks pulls to keep more free space than the disk has, as a site
// whose disk is nearly full would be: a pull must stop before it fills the disk.
func fullDiskConfig(t *testing.T) string {
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(os.TempDir(), &st))
	return fmt.Sprintf("[images]\nmin_free_bytes = %d\n", int64(st.Bavail)*st.Bsize+(1<<40))
}

// A pull on a disk that has less free space than the node keeps stops before it
// writes.
func attackFullDisk(t *testing.T, a *arena) {
	a.restartWith(t, fullDiskConfig(t))
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	l, err := testregistry.Layer(entries, testregistry.Gzip, false)
	require.NoError(t, err)
	img, err := testregistry.Image(v1.Config{Env: []string{"NEW=1"}}, false, l)
	require.NoError(t, err)
	_, err = a.reg.Push("test/other:1", img)
	require.NoError(t, err)
	_, err = a.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: a.reg.Host + "/test/other:1"}})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	assert.ErrorContains(t, err, "images.min_free_bytes")
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// gzipLayer is a layer whose compressed blob is data.
func gzipLayer(data []byte) (v1.Layer, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		return nil, err
	}
	return testregistry.CompressedLayer(data, "sha256:"+hex.EncodeToString(h.Sum(nil)))
}

// A pod's environment asks for GPUs or sets Enroot's knobs.
func attackEnvKnobs(t *testing.T, a *arena) {
	cfg := a.podConfig("knobs", nil)
	pod := a.runPodWith(t, cfg, "enroot")
	c := sh("knob", "true", nil)
	c.Image = &runtimeapi.ImageSpec{Image: a.hostile}
	c.Envs = []*runtimeapi.KeyValue{{Key: "ENROOT_ROOTFS_WRITABLE", Value: []byte("y")}}
	_, err := a.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: c})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	c = sh("gpus", `ls /dev | grep -c nvidia; echo done`, asRoot())
	c.Envs = []*runtimeapi.KeyValue{{Key: "NVIDIA_VISIBLE_DEVICES", Value: []byte("all")}}
	kcfg := a.podConfig("gpus-env", nil)
	out, code := a.run(t, a.runPod(t, kcfg), kcfg, c)
	assert.Equal(t, int32(0), code, out)
	assert.Equal(t, "0\ndone", out, "no GPU from the environment")
}

// A user whose jobs the store serves owns their job directory: they open it up and
// plant links where the daemon will write, to make it link the image over a host file
// or remove one; they keep a link of their own to hold the image past release; they
// name job IDs that climb out.
func attackJobLinks(t *testing.T, a *arena) {
	needTools(t, "setpriv")
	openToOthers(t, a.dir)
	dir := filepath.Join(a.dir, "root", "jobs", strconv.Itoa(testUID))
	uri := "docker://" + a.reg.Host + "#test/hostile:1"
	out, code := a.importer(t, testUID, "/home/ecri-test", "1", "0", "get", uri)
	require.Equal(t, 0, code, out)
	link := filepath.Join(dir, "1.0.sqsh")
	secret := filepath.Join(a.canary, "secret")
	user := func(script string) string {
		out, _ := asUser(t, testUID, []string{"PATH=/usr/bin:/bin"}, "sh", "-c", script)
		return out
	}
	// Their own directory: they may open it up and replace the next step's name.
	user(fmt.Sprintf("chmod 700 %[1]s; ln -s %[2]s %[1]s/1.1.sqsh; ln -s %[2]s %[1]s/1.2.sqsh", dir, secret))
	out, code = a.importer(t, testUID, "/home/ecri-test", "1", "1", "get", uri)
	require.Equal(t, 0, code, out)
	st, err := os.Lstat(filepath.Join(dir, "1.1.sqsh"))
	require.NoError(t, err)
	assert.True(t, st.Mode().IsRegular(), "the planted link was replaced, not followed")
	out, code = a.importer(t, testUID, "/home/ecri-test", "1", "2", "release")
	require.Equal(t, 0, code, out)
	// A hard link of their own would keep the image: the kernel refuses it (the file
	// is root's and not writable by them: fs.protected_hardlinks).
	got := user(fmt.Sprintf("ln %s /home/ecri-test/kept.sqsh 2>&1; ls /home/ecri-test/kept.sqsh 2>&1", link))
	assert.Contains(t, got, "No such file", "no hard link of the user's: %s", got)
	for _, job := range []string{"../../..", "1/../../x", "1.0"} {
		out, code = a.importer(t, testUID, "/home/ecri-test", job, "0", "get", uri)
		assert.Equal(t, 1, code, out)
		assert.Contains(t, out, "is not valid")
	}
	for _, step := range []string{"0", "1"} {
		out, code = a.importer(t, testUID, "/home/ecri-test", "1", step, "release")
		require.Equal(t, 0, code, out)
	}
	assert.FileExists(t, secret)
	for _, name := range []string{"1.0.sqsh", "1.1.sqsh"} {
		_, err := os.Lstat(filepath.Join(dir, name))
		assert.True(t, os.IsNotExist(err), "%s released", name)
	}
	holds, code := runCLI(t, "images", "holds", "--config", a.config)
	require.Equal(t, 0, code)
	assert.Len(t, lines(holds), 1, holds)
}

// The image socket is open to every local user: oversized requests, a flood of
// descriptors, garbage and half-sent requests are answered or dropped, and the daemon
// keeps no descriptor of them.
func attackImageSocket(t *testing.T, a *arena) {
	sock := filepath.Join(a.dir, "state", "images.sock")
	daemonFds := func() int {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", a.cmd.Process.Pid))
		require.NoError(t, err)
		return len(entries)
	}
	before := daemonFds()
	secret, err := os.Open(filepath.Join(a.canary, "secret"))
	require.NoError(t, err)
	defer secret.Close()
	send := func(data []byte, fds ...int) string {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
		require.NoError(t, err)
		defer c.Close()
		var oob []byte
		if len(fds) > 0 {
			oob = syscall.UnixRights(fds...)
		}
		if _, _, err := c.WriteMsgUnix(data, oob, nil); err != nil {
			return "write: " + err.Error()
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 1<<16)
		n, err := c.Read(buf)
		if err != nil {
			return "read: " + err.Error()
		}
		return string(buf[:n])
	}
	fd := int(secret.Fd())
	for _, tc := range []struct {
		name string
		data []byte
		fds  []int
		want string
	}{
		{"oversized", bytes.Repeat([]byte("x"), 200<<10), nil, "larger than"},
		{"garbage", []byte("\x00\xffnot json"), nil, "not valid JSON"},
		{"unknown field", []byte(`{"op":"get","evil":1}`), nil, "not valid JSON"},
		{"descriptors with a get", []byte(`{"op":"get","uri":"docker://x#y","job":"1","step":"0"}`), []int{fd, fd, fd, fd}, "descriptor"},
		{"a host file to import", []byte(`{"op":"holds"}`), []int{fd}, "takes no file descriptor"},
		{"unknown op", []byte(`{"op":"shell"}`), nil, "not known"},
	} {
		assert.Contains(t, send(tc.data, tc.fds...), tc.want, tc.name)
	}
	// Half a conversation: connect and say nothing.
	idle := make([]*net.UnixConn, 10)
	for i := range idle {
		idle[i], err = net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
		require.NoError(t, err)
	}
	for _, c := range idle {
		c.Close()
	}
	poll(t, func() bool { return daemonFds() <= before }, 10*time.Second, 100*time.Millisecond,
		"the daemon keeps descriptors of the requests: %d, was %d", daemonFds(), before)
}
