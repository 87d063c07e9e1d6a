package tests

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A real Kubernetes node on enroot-cri's shipped configuration: etcd, kube-apiserver,
// the kubelet and kubectl (tests/kube-build.sh builds them from the Go module proxy at
// the release of go.mod's k8s.io modules) on 127.0.0.1 with their own ports and
// certificates. make test-kubelet runs it.

// kubeNode is the control plane and the kubelet of one test.
type kubeNode struct {
	*podEnv
	bin, dir, name string
	kubeconfig     string
	kubelet        *http.Client // to the kubelet's API, as the API server's client
	kubeletURL     string
	procs          []*exec.Cmd
	cgroupRoot     string
}

func TestKubelet(t *testing.T) {
	bin := os.Getenv("ENROOT_CRI_KUBE_BIN")
	if bin == "" {
		t.Skip("run by make test-kubelet (it builds kube-apiserver, kubelet, kubectl and etcd)")
	}
	needCgroupV1(t)
	needTools(t, "script")
	hostUser(t, "ecri-test", testUID)
	k := startKubeNode(t, bin)

	// The node: Ready, with a semantic runtime version.
	var node struct {
		Status struct {
			NodeInfo   struct{ ContainerRuntimeVersion string } `json:"nodeInfo"`
			Conditions []struct{ Type, Status string }          `json:"conditions"`
		} `json:"status"`
	}
	k.eventually(t, func() bool {
		out, err := k.kubectlErr("get", "node", k.name, "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &node) != nil {
			return false
		}
		for _, c := range node.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				return true
			}
		}
		return false
	}, 120*time.Second, "the node never became Ready")
	assert.Regexp(t, `^enroot-cri://\d+\.\d+\.\d+(-\S+)?$`, node.Status.NodeInfo.ContainerRuntimeVersion)

	k.kubectl(t, "apply", "-f", "../packaging/runtimeclass.yaml")
	k.kubectl(t, "label", "node", k.name, "enroot-cri.io/runtime=true", "--overwrite")
	k.kubectl(t, "create", "configmap", "site", "--from-literal=greeting=hello-from-configmap")
	k.kubectl(t, "create", "secret", "generic", "token", "--from-literal=token=s3cret")
	k.kubectl(t, "apply", "-f", "-", k.manifests())

	// A pod on the default handler with probes and every kind of volume.
	k.waitPod(t, "web", "Running", true)
	logs := k.kubectl(t, "logs", "web")
	for _, want := range []string{"greeting=hello-from-configmap", "token=s3cret", "podname=web", "started"} {
		assert.Contains(t, logs, want)
	}
	// exec -it through a terminal, and port-forward.
	tty, err := exec.Command("script", "-qec", k.kubectlLine("exec", "-it", "web", "--", "tty"), "/dev/null").CombinedOutput()
	require.NoError(t, err, "%s", tty)
	assert.Regexp(t, `/dev/pts/\d+`, string(tty), "kubectl exec -it gets a terminal of the container")
	local := freePort(t)
	pf := exec.Command(filepath.Join(k.bin, "kubectl"), "--kubeconfig", k.kubeconfig, "port-forward", "pod/web", strconv.Itoa(local)+":8080")
	require.NoError(t, pf.Start())
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	poll(t, func() bool {
		body, _, err := getLocal(local)
		return err == nil && strings.Contains(body, "served")
	}, 30*time.Second, 200*time.Millisecond, "port-forward")

	// /stats/summary has the pods' network statistics (from the CRI).
	var summary struct {
		Pods []struct {
			PodRef  struct{ Name string } `json:"podRef"`
			Network *struct {
				Interfaces []struct {
					Name    string  `json:"name"`
					RxBytes *uint64 `json:"rxBytes"`
				} `json:"interfaces"`
			} `json:"network"`
		} `json:"pods"`
	}
	// From the kubelet itself: the API server does not proxy to a loopback node.
	k.eventually(t, func() bool {
		out, err := k.kubeletGet("/stats/summary")
		if err != nil || json.Unmarshal(out, &summary) != nil {
			return false
		}
		for _, p := range summary.Pods {
			if p.PodRef.Name == "web" && p.Network != nil && len(p.Network.Interfaces) > 0 && p.Network.Interfaces[0].RxBytes != nil {
				return true
			}
		}
		return false
	}, 60*time.Second, "no network statistics for pod web in /stats/summary", func() string {
		out, err := k.kubeletGet("/stats/summary")
		return fmt.Sprint(string(out), err)
	})

	// A privileged pod runs on the shipped defaults (kube-proxy, CNI daemonsets).
	k.waitPod(t, "privileged", "Succeeded", false)
	assert.Contains(t, k.kubectl(t, "logs", "privileged"), "CapEff:\t000001")

	// The enroot RuntimeClass runs the pod as the node user, in Enroot's user namespace.
	k.waitPod(t, "enroot", "Succeeded", false)
	enrootLogs := k.kubectl(t, "logs", "enroot")
	assert.Contains(t, enrootLogs, "uid=5001 gid=5001")
	assert.Regexp(t, `5001\s+5001\s+1`, enrootLogs)

	// A RuntimeClass whose handler the node lacks: the error a user sees.
	var events string
	poll(t, func() bool {
		events = k.kubectl(t, "get", "events", "--field-selector", "involvedObject.name=unknown-handler", "-o", "jsonpath={.items[*].message}")
		return strings.Contains(events, "not configured")
	}, 60*time.Second, time.Second, "no event for the unknown handler: %s", events)
	assert.Contains(t, events, `runtime_handler "kata" is not configured; configured handlers: enroot, kubernetes`)

	k.kubectl(t, "delete", "pod", "--all", "--grace-period=1", "--wait=true", "--timeout=90s")
}

// manifests are the test's objects.
func (k *kubeNode) manifests() string {
	img := k.image
	return fmt.Sprintf(`apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: kata}
handler: kata
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: %[2]s
  automountServiceAccountToken: false
  containers:
  - name: web
    image: %[1]s
    command: ["/bin/sh", "-c", "cat /cfg/greeting | sed s/^/greeting=/; cat /sec/token | sed s/^/token=/; sed s/^/podname=/ /info/name; echo; mkdir -p /tmp/www; echo served > /tmp/www/index.html; httpd -p 8080 -h /tmp/www; echo started; exec sleep 3600"]
    readinessProbe: {exec: {command: ["/bin/sh", "-c", "test -f /tmp/www/index.html"]}, periodSeconds: 1}
    livenessProbe: {exec: {command: ["true"]}, periodSeconds: 2}
    securityContext: {seLinuxOptions: {level: "s0:c123,c456"}}
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: info, mountPath: /info}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - {name: cfg, configMap: {name: site}}
  - {name: sec, secret: {secretName: token}}
  - name: info
    projected: {sources: [{downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}]}
  - {name: scratch, emptyDir: {}}
---
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  nodeName: %[2]s
  automountServiceAccountToken: false
  restartPolicy: Never
  containers:
  - {name: p, image: %[1]s, command: ["/bin/sh", "-c", "grep CapEff /proc/self/status"], securityContext: {privileged: true, runAsUser: 0}}
---
apiVersion: v1
kind: Pod
metadata: {name: enroot}
spec:
  nodeName: %[2]s
  runtimeClassName: enroot
  automountServiceAccountToken: false
  restartPolicy: Never
  securityContext: {runAsUser: 5001, runAsGroup: 5001}
  containers:
  - {name: e, image: %[1]s, command: ["/bin/sh", "-c", "id; cat /proc/self/uid_map"]}
---
apiVersion: v1
kind: Pod
metadata: {name: unknown-handler}
spec:
  nodeName: %[2]s
  runtimeClassName: kata
  automountServiceAccountToken: false
  containers:
  - {name: u, image: %[1]s, command: ["true"]}
`, img, k.name)
}

// waitPod waits for a pod's phase (and readiness).
func (k *kubeNode) waitPod(t *testing.T, name, phase string, ready bool) {
	t.Helper()
	var out string
	k.eventually(t, func() bool {
		out, _ = k.kubectlErr("get", "pod", name, "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].ready}")
		return strings.HasPrefix(out, phase) && (!ready || strings.HasSuffix(out, "true"))
	}, 120*time.Second, "pod "+name+" never reached "+phase)
}

// eventually polls cond until timeout, then fails with the components' logs.
func (k *kubeNode) eventually(t *testing.T, cond func() bool, timeout time.Duration, what string, more ...func() string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			describe, _ := k.kubectlErr("describe", "pods")
			for _, m := range more {
				what += "\n" + m()
			}
			t.Fatalf("%s\n%s\n%s", what, describe, k.logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (k *kubeNode) kubectlErr(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(k.bin, "kubectl"), append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

// kubectl runs kubectl; with "-" among the args, the last argument is its stdin.
func (k *kubeNode) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	var stdin string
	for _, a := range args {
		if a == "-" {
			stdin, args = args[len(args)-1], args[:len(args)-1]
			break
		}
	}
	cmd := exec.Command(filepath.Join(k.bin, "kubectl"), append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "kubectl %s: %s", strings.Join(args, " "), out)
	return string(out)
}

func (k *kubeNode) kubectlLine(args ...string) string {
	return strings.Join(append([]string{filepath.Join(k.bin, "kubectl"), "--kubeconfig", k.kubeconfig}, args...), " ")
}

func (k *kubeNode) logs() string {
	var b strings.Builder
	for _, f := range []string{"kubelet.log", "kube-apiserver.log"} {
		data, _ := os.ReadFile(filepath.Join(k.dir, f))
		lines := strings.Split(string(data), "\n")
		fmt.Fprintf(&b, "--- %s\n%s\n", f, strings.Join(lines[max(0, len(lines)-25):], "\n"))
	}
	return b.String()
}

// startKubeNode starts enroot-cri, etcd, kube-apiserver and the kubelet.
func startKubeNode(t *testing.T, bin string) *kubeNode {
	t.Helper()
	dir, err := os.MkdirTemp("", "kubelet-test-")
	require.NoError(t, err)
	// The node is named localhost: its Hostname address, which the API server dials,
	// is then 127.0.0.1 (the kubelet refuses a loopback InternalIP).
	k := &kubeNode{bin: bin, dir: dir, name: "localhost", cgroupRoot: fmt.Sprintf("/enroot-cri-kubelet-%d", os.Getpid())}
	// Last, once the daemon's cleanup removed the pods: the kubelet's cgroups.
	t.Cleanup(func() { removeCgroupTree(k.cgroupRoot) })
	k.podEnv = newPodEnv(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(k.logs())
			if keep := os.Getenv("ENROOT_CRI_KEEP_LOGS"); keep != "" {
				for _, f := range []string{"kubelet.log", "kube-apiserver.log", "etcd.log"} {
					data, _ := os.ReadFile(filepath.Join(k.dir, f))
					_ = os.WriteFile(filepath.Join(keep, f), data, 0o644)
				}
			}
		}
		k.stop(t)
	})
	pki := newPKI(t, filepath.Join(dir, "pki"))
	etcdPort, apiPort, kubeletPort, healthPort := freePort(t), freePort(t), freePort(t), freePort(t)
	k.spawn(t, "etcd", filepath.Join(bin, "etcd"), "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	k.spawn(t, "kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort), "--service-cluster-ip-range", "10.96.0.0/24",
		"--client-ca-file", pki.file("ca.crt"), "--tls-cert-file", pki.file("apiserver.crt"), "--tls-private-key-file", pki.file("apiserver.key"),
		"--service-account-key-file", pki.file("sa.pub"), "--service-account-signing-key-file", pki.file("sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc", "--authorization-mode", "Node,RBAC",
		"--kubelet-client-certificate", pki.file("apiserver-kubelet.crt"), "--kubelet-client-key", pki.file("apiserver-kubelet.key"),
		"--kubelet-certificate-authority", pki.file("ca.crt"), "--kubelet-preferred-address-types", "Hostname",
		"--allow-privileged=true", "--endpoint-reconciler-type", "none") // loopback cannot be the kubernetes service's endpoint
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	k.kubeconfig = pki.kubeconfig(t, "admin", server)
	k.eventually(t, func() bool { _, err := k.kubectlErr("get", "--raw", "/readyz"); return err == nil }, 90*time.Second,
		"kube-apiserver never became ready")
	kubeletConf := filepath.Join(dir, "kubelet.yaml")
	require.NoError(t, os.WriteFile(kubeletConf, []byte(fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: %q}}
authorization: {mode: AlwaysAllow}
tlsCertFile: %q
tlsPrivateKeyFile: %q
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
protectKernelDefaults: false
podLogsDir: %q
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
serializeImagePulls: false
%s`, kubeletPort, healthPort, pki.file("ca.crt"), pki.file("kubelet.crt"), pki.file("kubelet.key"), k.socket, k.socket,
		k.cgroupRoot, filepath.Join(dir, "pod-logs"), shippedFeatureGates(t))), 0o644))
	k.saveSysctls(t)
	keepDevicePluginDir(t)
	makeCgroupRoot(t, k.cgroupRoot)
	k.spawn(t, "kubelet", filepath.Join(bin, "kubelet"), "--config", kubeletConf,
		"--kubeconfig", pki.kubeconfig(t, "system:node:"+k.name, server), "--root-dir", filepath.Join(dir, "kubelet"),
		"--cert-dir", filepath.Join(dir, "kubelet-pki"), "--hostname-override", k.name, "--v", "2")
	k.kubectl(t, "create", "serviceaccount", "default")
	k.kubeletURL = fmt.Sprintf("https://127.0.0.1:%d", kubeletPort)
	k.kubelet = pki.client(t, "apiserver-kubelet")
	return k
}

// kubeletGet reads a path of the kubelet's API.
func (k *kubeNode) kubeletGet(path string) ([]byte, error) {
	resp, err := k.kubelet.Get(k.kubeletURL + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, body)
	}
	return body, err
}

// shippedFeatureGates are the featureGates of the packaged kubelet configuration
// snippet (packaging/kubelet-config.yaml), so the test runs what users merge.
func shippedFeatureGates(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../packaging/kubelet-config.yaml")
	require.NoError(t, err)
	_, gates, ok := strings.Cut(string(data), "featureGates:")
	require.True(t, ok, "the packaged kubelet configuration sets feature gates")
	return "featureGates:" + gates
}

// kubeletSysctls are the kernel settings the kubelet sets on start (protectKernelDefaults
// off); the test puts the machine's values back.
var kubeletSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

func (k *kubeNode) saveSysctls(t *testing.T) {
	saved := map[string][]byte{}
	for _, s := range kubeletSysctls {
		if v, err := os.ReadFile("/proc/sys/" + s); err == nil {
			saved[s] = v
		}
	}
	t.Cleanup(func() {
		for s, v := range saved {
			_ = os.WriteFile("/proc/sys/"+s, v, 0o644)
		}
	})
}

// keepDevicePluginDir removes, after the test, what the kubelet makes in its
// device-plugin directory, which is /var/lib/kubelet/device-plugins whatever its root
// (the plugins' API fixes it). A machine with a kubelet of its own is not a test node.
func keepDevicePluginDir(t *testing.T) {
	const dir = "/var/lib/kubelet/device-plugins"
	if _, err := os.Stat(filepath.Join(dir, "kubelet.sock")); err == nil {
		t.Skipf("%s/kubelet.sock exists: a kubelet runs on this machine (or a test before this one left it)", dir)
	}
	var made []string
	for d := dir; d != "/var/lib"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err != nil {
			made = append(made, d)
		}
	}
	t.Cleanup(func() {
		_ = os.Remove(filepath.Join(dir, "kubelet.sock"))
		for _, d := range made {
			_ = os.Remove(d)
		}
	})
}

func (k *kubeNode) spawn(t *testing.T, name, path string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(k.dir, name+".log"))
	require.NoError(t, err)
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start(), name)
	k.procs = append(k.procs, cmd)
}

// stop ends the kubelet and the control plane and unmounts the kubelet's volumes (the
// daemon's cleanup removes the pods, then the kubelet's cgroups go).
func (k *kubeNode) stop(t *testing.T) {
	for i := len(k.procs) - 1; i >= 0; i-- {
		p := k.procs[i]
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	// The kubelet's mounts (secrets, configmaps, emptyDirs) under its root.
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mounts []string
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], k.dir) {
				mounts = append(mounts, f[4])
			}
		}
		for i := len(mounts) - 1; i >= 0; i-- {
			_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
		}
	}
	os.RemoveAll(k.dir)
}

// makeCgroupRoot makes the kubelet's cgroup root in every hierarchy (the kubelet wants
// it to exist), with the root's CPUs and memory nodes.
func makeCgroupRoot(t *testing.T, path string) {
	t.Helper()
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		if st, err := os.Lstat(h); err != nil || !st.IsDir() || filepath.Base(h) == "unified" {
			continue
		}
		dir := filepath.Join(h, path)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		if filepath.Base(h) == "cpuset" {
			// Each level from the top: a cpuset takes CPUs only from its parent's.
			parts := strings.Split(strings.Trim(path, "/"), "/")
			for i := range parts {
				level := filepath.Join(append([]string{h}, parts[:i+1]...)...)
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(h, f))
					require.NoError(t, err)
					require.NoError(t, os.WriteFile(filepath.Join(level, f), v, 0o644))
				}
			}
		}
	}
}

// removeCgroupTree removes a cgroup and everything under it, in every hierarchy.
func removeCgroupTree(path string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", path))
	for _, d := range dirs {
		var all []string
		_ = filepath.Walk(d, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			_ = os.Remove(all[i])
		}
	}
}

// pki is a test certificate authority and the certificates the components use.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	serial int64
}

func newPKI(t *testing.T, dir string) *pki {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o700))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "enroot-cri-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &pki{dir: dir, ca: ca, caKey: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serial: 1}
	require.NoError(t, os.WriteFile(p.file("ca.crt"), p.caPEM, 0o644))
	p.issue(t, "apiserver", "kube-apiserver", nil, []string{"localhost", "kubernetes", "kubernetes.default.svc"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}, x509.ExtKeyUsageServerAuth)
	p.issue(t, "apiserver-kubelet", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil, x509.ExtKeyUsageClientAuth)
	p.issue(t, "kubelet", "localhost", nil, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, x509.ExtKeyUsageServerAuth)
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p.writeKey(t, "sa.key", sa)
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p.file("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600))
	return p
}

func (p *pki) file(name string) string { return filepath.Join(p.dir, name) }

func (p *pki) writeKey(t *testing.T, name string, key *ecdsa.PrivateKey) {
	der, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p.file(name), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600))
}

// issue writes name.crt and name.key for cn in groups.
func (p *pki) issue(t *testing.T, name, cn string, groups, dns []string, ips []net.IP, usage x509.ExtKeyUsage) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn, Organization: groups},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: dns, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p.file(name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	p.writeKey(t, name+".key", key)
}

// client is an HTTPS client trusting the CA, with name's certificate.
func (p *pki) client(t *testing.T, name string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.file(name+".crt"), p.file(name+".key"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}}
}

// kubeconfig writes a kubeconfig for user (system:masters for admin, system:nodes for
// a node) and returns its path.
func (p *pki) kubeconfig(t *testing.T, user, server string) string {
	t.Helper()
	name := strings.NewReplacer(":", "-").Replace(user)
	groups := []string{"system:masters"}
	if strings.HasPrefix(user, "system:node:") {
		groups = []string{"system:nodes"}
	}
	p.issue(t, name, user, groups, nil, nil, x509.ExtKeyUsageClientAuth)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: %[3]q, user: {client-certificate: %q, client-key: %q}}]
contexts: [{name: test, context: {cluster: test, user: %[3]q}}]
current-context: test
`, server, p.file("ca.crt"), name, p.file(name+".crt"), p.file(name+".key"))
	path := p.file(name + ".kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}
