package proxy

import (
	"context"
	"time"
)

// PublishFleetStats writes this replica's totals now, as its loop does
// every fleetEvery.
func (s *Server) PublishFleetStats(ctx context.Context) error {
	return s.fleetStats.publish(ctx, time.Now())
}
