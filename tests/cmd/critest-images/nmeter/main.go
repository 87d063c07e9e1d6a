// Command nmeter stands in for the busybox applet the Kubernetes node e2e suite's
// busybox image has and Debian's busybox lacks. It knows only what the suite asks of
// it: `nmeter -d MSEC FORMAT` where FORMAT's only conversion is %t or %Nt (the time of
// day with N decimals), printed every MSEC milliseconds until its output closes.
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var conversion = regexp.MustCompile(`%([0-9]?)t`)

func main() {
	delay, format, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "nmeter: %v\nusage: nmeter [-d MSEC] FORMAT (this stand-in knows only %%t and %%Nt)\n", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	for {
		now := time.Now()
		line := conversion.ReplaceAllStringFunc(format, func(m string) string {
			layout := "15:04:05"
			if n := m[1 : len(m)-1]; n != "" && n != "0" {
				layout += "." + strings.Repeat("0", int(n[0]-'0'))
			}
			return now.Format(layout)
		})
		if _, err := fmt.Fprintln(out, line); err != nil {
			os.Exit(0)
		}
		if err := out.Flush(); err != nil {
			os.Exit(0) // the reader went away (head -n1)
		}
		if delay > 0 {
			time.Sleep(time.Duration(delay) * time.Millisecond)
		}
	}
}

// parseArgs reads busybox's arguments: -d MSEC or -dMSEC, then FORMAT.
func parseArgs(args []string) (delay int, format string, err error) {
	delay = 1000
	for len(args) > 0 && strings.HasPrefix(args[0], "-d") {
		v := strings.TrimPrefix(args[0], "-d")
		args = args[1:]
		if v == "" && len(args) > 0 {
			v, args = args[0], args[1:]
		}
		if delay, err = strconv.Atoi(v); err != nil {
			return 0, "", fmt.Errorf("-d %q: want milliseconds", v)
		}
	}
	if len(args) != 1 {
		return 0, "", fmt.Errorf("want one FORMAT, got %d arguments", len(args))
	}
	format = args[0]
	if rest := conversion.ReplaceAllString(format, ""); strings.Contains(rest, "%") {
		return 0, "", fmt.Errorf("%q: this stand-in knows only %%t and %%Nt", format)
	}
	return delay, format, nil
}
