// Command bench-start measures container create+start latency for a ~10 MiB and a
// ~2 GiB image on a running enroot-cri, and the resident memory of the daemon and of a
// shim. Beside it, in the same invocation, it times the reference: unpacking the same
// squashfs files as `enroot create` does, which grows with the image.
//
//	go run ./tests/cmd/bench-start [-bin bin/enroot-cri] [-big-mib 2048] [-runs 5]
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

func main() {
	bin := flag.String("bin", "bin/enroot-cri", "the enroot-cri binary")
	bigMiB := flag.Int("big-mib", 2048, "size of the big image")
	runs := flag.Int("runs", 5, "create+start runs per image")
	flag.Parse()
	if err := run(*bin, *bigMiB, *runs); err != nil {
		fmt.Fprintf(os.Stderr, "bench-start: %v\n", err)
		os.Exit(1)
	}
}

type bench struct {
	dir     string
	runtime runtimeapi.RuntimeServiceClient
	images  runtimeapi.ImageServiceClient
	daemon  *exec.Cmd
}

func run(bin string, bigMiB, runs int) error {
	dir, err := os.MkdirTemp("", "bench-start-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	reg, err := testregistry.Start(testregistry.Options{})
	if err != nil {
		return err
	}
	defer reg.Close()
	fmt.Printf("building images: small (~10 MiB) and big (~%d MiB)...\n", bigMiB)
	if err := pushImage(reg, "bench/small:1", 10); err != nil {
		return err
	}
	if err := pushImage(reg, "bench/big:1", bigMiB); err != nil {
		return err
	}
	b, err := startDaemon(bin, dir)
	if err != nil {
		return err
	}
	defer func() { _ = b.daemon.Process.Kill(); _, _ = b.daemon.Process.Wait() }()
	ctx := context.Background()
	pod, err := b.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig()})
	if err != nil {
		return err
	}
	fmt.Printf("\n%-8s %10s %12s %14s %16s\n", "image", "squashfs", "pull", "create+start", "enroot create*")
	for _, name := range []string{"small", "big"} {
		ref := reg.Host + "/bench/" + name + ":1"
		start := time.Now()
		if _, err := b.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			return err
		}
		pull := time.Since(start)
		st, err := b.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: true})
		if err != nil {
			return err
		}
		var info struct{ Squashfs string }
		_ = json.Unmarshal([]byte(st.Info["info"]), &info)
		median, err := b.createStart(ctx, pod.PodSandboxId, ref, runs)
		if err != nil {
			return err
		}
		unpack, err := unsquash(info.Squashfs, filepath.Join(dir, "unpack-"+name))
		if err != nil {
			return err
		}
		fmt.Printf("%-8s %8.0fMB %11.2fs %12.1fms %15.2fs\n", name, float64(st.Image.Size)/1e6, pull.Seconds(),
			float64(median.Microseconds())/1000, unpack.Seconds())
	}
	fmt.Println("* reference: unsquashfs of the same image, what `enroot create` costs before a start.")
	return b.memory(ctx, pod.PodSandboxId, reg.Host+"/bench/small:1")
}

// createStart returns the median of runs create+start latencies.
func (b *bench) createStart(ctx context.Context, pod, ref string, runs int) (time.Duration, error) {
	var times []time.Duration
	for i := range runs {
		start := time.Now()
		c, err := b.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: podConfig(),
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", i)},
				Image: &runtimeapi.ImageSpec{Image: ref}, Command: []string{"/bin/true"}}})
		if err != nil {
			return 0, err
		}
		if _, err := b.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			return 0, err
		}
		times = append(times, time.Since(start))
		if _, err := b.runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ContainerId}); err != nil {
			return 0, err
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2], nil
}

// memory prints the resident memory of the daemon and of one running container's shim.
func (b *bench) memory(ctx context.Context, pod, ref string) error {
	c, err := b.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: podConfig(),
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
			Image: &runtimeapi.ImageSpec{Image: ref}, Command: []string{"sleep", "1000"}}})
	if err != nil {
		return err
	}
	if _, err := b.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		return err
	}
	st, err := b.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId, Verbose: true})
	if err != nil {
		return err
	}
	var info struct{ Bundle string }
	_ = json.Unmarshal([]byte(st.Info["info"]), &info)
	shimPid, _ := os.ReadFile(filepath.Join(info.Bundle, "shim.pid"))
	fmt.Printf("\nresident memory: daemon %s, one shim %s\n", rss(strconv.Itoa(b.daemon.Process.Pid)), rss(strings.TrimSpace(string(shimPid))))
	_, err = b.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
	return err
}

func rss(pid string) string {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func unsquash(sqsh, dir string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.Command("unsquashfs", "-no-progress", "-d", dir, sqsh).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("unsquashfs: %w: %s", err, out)
	}
	return time.Since(start), os.RemoveAll(dir)
}

func podConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "bench", Namespace: "bench", Uid: "bench"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}},
	}
}

// pushImage pushes busybox plus mib MiB of random files in uncompressed layers.
func pushImage(reg *testregistry.Registry, name string, mib int) error {
	entries, err := testregistry.BusyboxEntries()
	if err != nil {
		return err
	}
	base, err := testregistry.Layer(entries, testregistry.Gzip, true)
	if err != nil {
		return err
	}
	layers := []v1.Layer{base}
	rng := rand.New(rand.NewPCG(uint64(mib), 9))
	const perLayer = 128
	for done := 0; done < mib; done += perLayer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		chunk := make([]byte, 1<<20)
		for f := 0; f < min(perLayer, mib-done); f++ {
			for i := 0; i < len(chunk); i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					chunk[i+j] = byte(v >> (8 * j))
				}
			}
			_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/%d/%d", done, f), Mode: 0o644, Size: int64(len(chunk)), Typeflag: tar.TypeReg})
			_, _ = tw.Write(chunk)
		}
		_ = tw.Close()
		l, err := testregistry.LayerFromTar(buf.Bytes(), testregistry.Uncompressed, true)
		if err != nil {
			return err
		}
		layers = append(layers, l)
	}
	img, err := testregistry.Image(v1.Config{Env: []string{"PATH=/bin"}}, true, layers...)
	if err != nil {
		return err
	}
	_, err = reg.Push(name, img)
	return err
}

func startDaemon(bin, dir string) (*bench, error) {
	sock := filepath.Join(dir, "cri.sock")
	cfg := fmt.Sprintf("socket = %q\nroot = %q\nstate = %q\n[enroot]\nconfig_dir = %q\n",
		sock, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "enroot"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "config.toml"))
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir, daemon: cmd, runtime: runtimeapi.NewRuntimeServiceClient(conn), images: runtimeapi.NewImageServiceClient(conn)}
	for range 300 {
		if _, err := b.runtime.Version(context.Background(), &runtimeapi.VersionRequest{}); err == nil {
			return b, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("daemon did not start; see %s", filepath.Join(dir, "daemon.log"))
}
