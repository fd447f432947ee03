package cli

import (
	"context"

	"github.com/tandem-sync/tandem/internal/demo"
)

// runDemo is `tandem demo`: the whole story on a throwaway local
// PostgreSQL. It needs no configuration, so -c is ignored.
func runDemo(ctx context.Context, _ string, args []string, env Env) error {
	if len(args) > 0 {
		return usageError{"demo takes no arguments"}
	}
	return demo.Run(ctx, env.Stdout)
}
