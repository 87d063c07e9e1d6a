package network

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/enroot-cri/enroot-cri/internal/nsenter"
)

// Counters are one interface's /proc/net/dev counters: receive bytes, packets, errs,
// drop, fifo, frame, compressed, multicast, then transmit bytes, packets, errs, drop,
// fifo, colls, carrier, compressed.
type Counters struct {
	Name string
	C    [16]uint64
}

// ReadCounters reads the interface counters of the network namespace pinned at netns,
// loopback left out.
func ReadCounters(netns string) ([]Counters, error) {
	var data []byte
	err := nsenter.Run(netns, func() error {
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read pod network counters: %w", err)
	}
	return parseNetDev(string(data)), nil
}

// parseNetDev reads /proc/net/dev's lines, loopback left out.
func parseNetDev(data string) []Counters {
	var out []Counters
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		name, counters, ok := strings.Cut(sc.Text(), ":")
		f := strings.Fields(counters)
		name = strings.TrimSpace(name)
		if !ok || len(f) < 16 || name == "lo" {
			continue
		}
		n := Counters{Name: name}
		for i := range n.C {
			n.C[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		out = append(out, n)
	}
	return out
}
