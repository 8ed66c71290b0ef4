package caudal_test

import (
	"context"

	"github.com/caudal-go/caudal"
)

// sinkFunc adapts a function to the caudal.Sink interface.
type sinkFunc func(ctx context.Context, e *caudal.Event)

func (f sinkFunc) Record(ctx context.Context, e *caudal.Event) { f(ctx, e) }
