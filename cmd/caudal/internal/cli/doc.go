// Package cli implements the caudal command: flag parsing, the bench
// subcommand and its reports, progress display and exit codes.
package cli
