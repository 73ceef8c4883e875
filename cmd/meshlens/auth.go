package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/meshlens/meshlens/auth"
)

func init() {
	register("auth", "make an API token and its hash for the auth config (auth token --name N --role R)", runAuth)
}

func runAuth(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "token" {
		return fmt.Errorf("usage: meshlens auth token --name NAME --role viewer|operator|approver|admin")
	}
	fs := flag.NewFlagSet("auth token", flag.ContinueOnError)
	name := fs.String("name", "", "principal name recorded in the audit log")
	roleS := fs.String("role", "viewer", "viewer, operator, approver or admin")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	role, err := auth.ParseRole(*roleS)
	if err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("auth token: --name is required")
	}
	tok, hash, err := auth.NewToken()
	if err != nil {
		return err
	}
	// The token goes to stdout once; only the hash belongs in config.
	fmt.Fprintf(os.Stderr, "# give this token to %s; it is not stored anywhere:\n", *name)
	fmt.Println(tok)
	fmt.Fprintf(os.Stderr, "# config (auth.tokens):\n- {name: %s, role: %s, sha256: %q}\n# or a token file line:\n%s %s %s\n", *name, role, hash, *name, role, hash)
	return nil
}
