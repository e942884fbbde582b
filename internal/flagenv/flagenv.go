// Package flagenv gives command-line flags environment fallbacks: a flag
// not given on the command line takes its variable's value, when set.
package flagenv

import (
	"flag"
	"fmt"
)

// Document appends each flag's variable to its usage line.
func Document(fs *flag.FlagSet, env map[string]string) {
	fs.VisitAll(func(f *flag.Flag) {
		if v := env[f.Name]; v != "" {
			f.Usage += " [$" + v + "]"
		}
	})
}

// Parse parses args with fs, then sets each flag that args did not give
// from its environment variable (read through getenv) when that is set.
func Parse(fs *flag.FlagSet, args []string, env map[string]string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, variable := range env {
		if v := getenv(variable); v != "" && !given[name] {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("$%s: %w", variable, err)
			}
		}
	}
	return nil
}
