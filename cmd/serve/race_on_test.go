//go:build race

package main

// raceNote says how the tests were built, for reports.
func raceNote() string { return "built with -race" }
