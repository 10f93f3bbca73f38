package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/control"
)

// buildDispatcher wires pipeline/dispatcher once it exists.
func buildDispatcher(cfg *config.Config, view *control.View, log *slog.Logger) (func(ctx context.Context) error, error) {
	return nil, errors.New("dispatcher: pipeline/dispatcher has not landed yet")
}
