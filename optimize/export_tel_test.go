package optimize

import (
	"context"

	"github.com/caudal-go/caudal"
)

// Delivery modes for SetTelemetryDelivery.
const (
	DeliveryAdaptive = adaptiveDelivery
	DeliveryRing     = ringDelivery
	DeliveryDirect   = directDelivery
)

// SetTelemetryDelivery fixes where the telemetries made from now on
// deliver their events, and returns the function that restores the mode.
// Tests that call it must not run in parallel.
func SetTelemetryDelivery(m deliveryMode) (restore func()) {
	old := telemetryMode
	telemetryMode = m
	return func() { telemetryMode = old }
}

// Telemetry is the telemetry component alone, delivering to a sink.
type Telemetry struct{ t *telemetry }

// NewTelemetry returns the telemetry of cfg (its knobs; Enabled is not
// read), delivering to sink in mode m, not started.
func NewTelemetry(cfg TelemetryConfig, sink caudal.Sink, m deliveryMode) *Telemetry {
	defer SetTelemetryDelivery(m)()
	return &Telemetry{t: newTelemetry(cfg, sink)}
}

func (x *Telemetry) Record(ctx context.Context, e *caudal.Event) { x.t.Record(ctx, e) }
func (x *Telemetry) Start()                                      { x.t.Start() }
func (x *Telemetry) Flush(ctx context.Context) error             { return x.t.Flush(ctx) }
func (x *Telemetry) Stop() error                                 { return x.t.Stop() }
func (x *Telemetry) Stats() TelemetryStats                       { return x.t.stats() }
