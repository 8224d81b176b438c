package check

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText writes the readable report: one line per case, a failure's
// explanation indented under it, and a summary line.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	models := map[string]bool{}
	for _, c := range r.Cases {
		models[c.Model] = true
		status := "PASS"
		if !c.Passed() {
			status = "FAIL"
		}
		where := c.Model
		if c.Version != "" {
			where += " v" + c.Version
		}
		fmt.Fprintf(&b, "%s  %-24s %s", status, where, c.Name)
		if c.Duration > 0 {
			fmt.Fprintf(&b, " (%s)", c.Duration.Round(time.Microsecond))
		}
		if c.Detail != "" && c.Passed() {
			fmt.Fprintf(&b, ": %s", c.Detail)
		}
		b.WriteByte('\n')
		if !c.Passed() {
			for _, line := range strings.Split(strings.TrimRight(c.Failure, "\n"), "\n") {
				fmt.Fprintf(&b, "      %s\n", line)
			}
		}
	}
	verdict := "ok"
	if r.Failed() > 0 {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "%s: %d models, %d checks, %d failed\n", verdict, len(models), len(r.Cases), r.Failed())
	_, err := io.WriteString(w, b.String())
	return err
}

// The JUnit XML schema as CI systems read it: one test suite per model,
// one test case per check.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.6f", d.Seconds()) }

// WriteJUnit writes the report as JUnit XML: a test suite per model, a
// test case per check named "vN/check".
func (r Report) WriteJUnit(w io.Writer) error {
	out := junitSuites{Name: "onnxserve check"}
	index := map[string]int{}
	var total time.Duration
	for _, c := range r.Cases {
		suite := c.Model
		if suite == "" {
			suite = "repository"
		}
		i, ok := index[suite]
		if !ok {
			i = len(out.Suites)
			index[suite] = i
			out.Suites = append(out.Suites, junitSuite{Name: suite})
		}
		s := &out.Suites[i]
		name := c.Name
		if c.Version != "" {
			name = "v" + c.Version + "/" + c.Name
		}
		jc := junitCase{Name: name, Classname: "onnxserve.check." + suite, Time: seconds(c.Duration), SystemOut: c.Detail}
		if !c.Passed() {
			first, _, _ := strings.Cut(c.Failure, "\n")
			jc.Failure = &junitFailure{Message: first, Text: c.Failure}
			s.Failures++
			out.Failures++
		}
		s.Tests++
		out.Tests++
		s.Cases = append(s.Cases, jc)
		total += c.Duration
	}
	out.Time = seconds(total)
	for i := range out.Suites {
		var d time.Duration
		for _, c := range r.Cases {
			if c.Model == out.Suites[i].Name || c.Model == "" && out.Suites[i].Name == "repository" {
				d += c.Duration
			}
		}
		out.Suites[i].Time = seconds(d)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
