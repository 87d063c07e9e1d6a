// Command critest-report reads critest's (or another Ginkgo suite's) JUnit report, prints how many specs passed,
// failed and were skipped and every failing spec, and exits non-zero when a spec fails
// that the expected-failures file does not list. Each line of that file is
// "<text in the spec name> | <why it cannot pass here>"; # starts a comment.
package main

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"strings"
)

type suites struct {
	Suites []suite `xml:"testsuite"`
}

type suite struct {
	Cases []testcase `xml:"testcase"`
}

type testcase struct {
	Name    string    `xml:"name,attr"`
	Status  string    `xml:"status,attr"`
	Failure *struct{} `xml:"failure"`
	Error   *struct{} `xml:"error"`
	Skipped *struct{} `xml:"skipped"`
}

func main() {
	junit := flag.String("junit", "_output/critest-junit.xml", "critest's JUnit report")
	expectedFile := flag.String("expected", "tests/critest-expected-failures.txt", "expected failures")
	suiteName := flag.String("suite", "critest", "the suite's name in the summary line")
	flag.Parse()
	if err := run(*suiteName, *junit, *expectedFile); err != nil {
		fmt.Fprintf(os.Stderr, "critest-report: %v\n", err)
		os.Exit(1)
	}
}

func run(name, junit, expectedFile string) error {
	data, err := os.ReadFile(junit)
	if err != nil {
		return fmt.Errorf("read report: %w", err)
	}
	var s suites
	if err := xml.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("parse report: %w", err)
	}
	expected, err := readExpected(expectedFile)
	if err != nil {
		return err
	}
	var passed, failed, skipped int
	var unexpected []string
	for _, su := range s.Suites {
		for _, c := range su.Cases {
			switch {
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				skipped++
			case c.Failure != nil || c.Error != nil:
				failed++
				why, ok := match(expected, c.Name)
				if ok {
					fmt.Printf("FAILED (expected: %s): %s\n", why, c.Name)
				} else {
					fmt.Printf("FAILED: %s\n", c.Name)
					unexpected = append(unexpected, c.Name)
				}
			default:
				passed++
			}
		}
	}
	fmt.Printf("%s: %d passed, %d failed, %d skipped\n", name, passed, failed, skipped)
	if len(unexpected) > 0 {
		return fmt.Errorf("%d unexpected failures", len(unexpected))
	}
	return nil
}

func readExpected(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read expected failures: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		spec, why, ok := strings.Cut(line, "|")
		if !ok || strings.TrimSpace(why) == "" {
			return nil, fmt.Errorf("%s: %q needs \"<spec text> | <reason>\"", path, line)
		}
		out[strings.TrimSpace(spec)] = strings.TrimSpace(why)
	}
	return out, sc.Err()
}

func match(expected map[string]string, name string) (string, bool) {
	for spec, why := range expected {
		if strings.Contains(name, spec) {
			return why, true
		}
	}
	return "", false
}
