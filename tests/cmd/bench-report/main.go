// Command bench-report compares critest -benchmark results of two runtimes: for each
// benchmark file and operation it prints the median and 95th percentile of both and
// the ratio of the first runtime's median to the second's.
//
//	bench-report -a enroot-cri=DIR -b containerd=DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type resultsSet struct {
	OperationsNames []string `json:"operationsNames"`
	NumParallel     int      `json:"numParallel"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

func main() {
	a := flag.String("a", "", "NAME=DIR of the first runtime's results")
	b := flag.String("b", "", "NAME=DIR of the second runtime's results")
	flag.Parse()
	if err := run(*a, *b); err != nil {
		fmt.Fprintf(os.Stderr, "bench-report: %v\n", err)
		os.Exit(1)
	}
}

func run(a, b string) error {
	nameA, dirA, okA := strings.Cut(a, "=")
	nameB, dirB, okB := strings.Cut(b, "=")
	if !okA || !okB {
		return fmt.Errorf("-a and -b take NAME=DIR")
	}
	files, err := filepath.Glob(filepath.Join(dirA, "*.json"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	fmt.Printf("%-44s %12s %12s %12s %12s %8s\n", "operation", nameA+" p50", nameA+" p95", nameB+" p50", nameB+" p95", "ratio")
	for _, fa := range files {
		ra, err := load(fa)
		if err != nil {
			return err
		}
		rb, err := load(filepath.Join(dirB, filepath.Base(fa)))
		if err != nil {
			return err
		}
		bench := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(fa), ".json"), "_benchmark_data")
		for i, op := range ra.OperationsNames {
			pa50, pa95 := percentiles(ra, i)
			pb50, pb95 := percentiles(rb, i)
			ratio := "-"
			if pb50 > 0 {
				ratio = fmt.Sprintf("%.2f", float64(pa50)/float64(pb50))
			}
			fmt.Printf("%-44s %12s %12s %12s %12s %8s\n", bench+"/"+op, pa50, pa95, pb50, pb95, ratio)
		}
	}
	fmt.Printf("\nratio: %s median / %s median (below 1: %s is faster)\n", nameA, nameB, nameA)
	return nil
}

func load(path string) (*resultsSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var r resultsSet
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &r, nil
}

// percentiles returns the median and 95th percentile of operation i.
func percentiles(r *resultsSet, i int) (time.Duration, time.Duration) {
	var d []int64
	for _, p := range r.Datapoints {
		if i < len(p.OperationsDurationsNs) {
			d = append(d, p.OperationsDurationsNs[i])
		}
	}
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(x, y int) bool { return d[x] < d[y] })
	at := func(q float64) time.Duration {
		return time.Duration(d[min(len(d)-1, int(q*float64(len(d))))]).Round(10 * time.Microsecond)
	}
	return at(0.5), at(0.95)
}
