package main

import (
	"fmt"
	"io"
	"strings"
)

// command is one subcommand of the onnxserve binary. run gets the
// arguments after the command's name and returns the exit status; it
// writes to stdout and stderr, or to the process's own where it must (the
// server's logs).
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// defaultCommand runs when the first argument is a flag or absent, so
// `onnxserve --http-port 0` is `onnxserve serve --http-port 0`.
const defaultCommand = "serve"

// commands is every subcommand; adding one (check, score, profile,
// export) is one entry here and a thin function over an internal package.
// help is added by dispatch.
var commands = []command{
	{"serve", "serve the model repository over HTTP and gRPC (the default; see serve -h for its flags)", serveMain},
	{"check", "load and test models as the server would (golden tests, latency budgets): the CI gate", checkMain},
	{"score", "batch inference over a JSON lines, CSV, NPY or Parquet file, resumable", scoreMain},
	{"profile", "run reference data through a model version and write its drift reference, profile.json", profileMain},
	{"version", "print the version", versionMain},
	{"export", "join the payload log's requests and responses into a training set (Parquet, JSONL, CSV)", exportMain},
}

// dispatch picks the command named by args[0] from cmds and runs it with
// the rest; a first argument that is a flag, or none, runs the default
// command with all of args. `help` lists the commands; `help NAME` is
// `NAME -h`. An unknown command is a usage error (status 2).
func dispatch(cmds []command, args []string, stdout, stderr io.Writer) int {
	find := func(name string) (command, bool) {
		for _, c := range cmds {
			if c.name == name {
				return c, true
			}
		}
		return command{}, false
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		c, _ := find(defaultCommand)
		return c.run(args, stdout, stderr)
	}
	name, rest := args[0], args[1:]
	if name == "help" {
		if len(rest) > 0 {
			if c, ok := find(rest[0]); ok {
				return c.run([]string{"-h"}, stdout, stderr)
			}
			fmt.Fprintf(stderr, "onnxserve: unknown command %q\n", rest[0])
			usage(cmds, stderr)
			return 2
		}
		usage(cmds, stdout)
		return 0
	}
	c, ok := find(name)
	if !ok {
		fmt.Fprintf(stderr, "onnxserve: unknown command %q\n", name)
		usage(cmds, stderr)
		return 2
	}
	return c.run(rest, stdout, stderr)
}

// usage lists the commands.
func usage(cmds []command, w io.Writer) {
	fmt.Fprintf(w, "usage: onnxserve [command] [flags]\n\ncommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "help", "list the commands; help NAME shows a command's flags")
	fmt.Fprintf(w, "\nWith no command, or flags first, onnxserve runs %s.\n", defaultCommand)
}

// versionMain prints the build version.
func versionMain(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "onnxserve %s\n", version)
	return 0
}
