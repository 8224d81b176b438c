package payloadlog

import (
	"context"
	"sync"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// sinkQueue runs one sink behind a bounded queue on its own goroutine.
type sinkQueue struct {
	name string
	sink Sink
	log  *zap.Logger
	ch   chan *event.Event

	// ctx ends when close's deadline passes, cutting a Write short.
	ctx    context.Context
	cancel context.CancelFunc

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}

	events, dropped, errors prometheus.Counter
}

func newSinkQueue(name string, s Sink, size int, m *metrics, log *zap.Logger) *sinkQueue {
	ctx, cancel := context.WithCancel(context.Background())
	q := &sinkQueue{name: name, sink: s, log: log, ch: make(chan *event.Event, size), ctx: ctx, cancel: cancel,
		stop: make(chan struct{}), done: make(chan struct{}),
		events: m.events.WithLabelValues(name), dropped: m.dropped.WithLabelValues(name), errors: m.errors.WithLabelValues(name)}
	go q.run()
	return q
}

// offer queues ev, or drops it when the queue is full; it never blocks.
func (q *sinkQueue) offer(ev *event.Event) {
	select {
	case <-q.stop:
		q.dropped.Inc()
		return
	default:
	}
	select {
	case q.ch <- ev:
	default:
		q.dropped.Inc()
	}
}

func (q *sinkQueue) run() {
	defer close(q.done)
	for {
		select {
		case ev := <-q.ch:
			q.write(ev)
		case <-q.stop:
			for {
				select {
				case ev := <-q.ch:
					if q.ctx.Err() != nil {
						q.dropped.Inc()
						continue
					}
					q.write(ev)
				default:
					return
				}
			}
		}
	}
}

func (q *sinkQueue) write(ev *event.Event) {
	if err := q.sink.Write(q.ctx, ev); err != nil {
		q.errors.Inc()
		q.dropped.Inc()
		q.log.Debug("payload event not delivered", zap.String("id", ev.ID()), zap.Error(err))
		return
	}
	q.events.Inc()
}

// close ends intake, writes what is queued until ctx ends (then drops the
// rest, counted), waits for the goroutine and closes the sink.
func (q *sinkQueue) close(ctx context.Context) error {
	q.stopOnce.Do(func() { close(q.stop) })
	stopCut := context.AfterFunc(ctx, q.cancel)
	defer stopCut()
	<-q.done
	q.cancel()
	return q.sink.Close()
}
