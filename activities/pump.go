package activities

import (
	"context"
	"sync/atomic"
	"time"
)

// pump is the part of a connector's activity that Ingest and Deliver
// share: a reader goroutine (Ingest's source, Deliver's walk of the
// table's versions) fills a queue bounded by records
// (max_queued_records), and the activity's goroutine takes the batches
// out and commits them at its cadence (Ingest: max_batch_size records
// or commit_interval_ms; Deliver: every catch-up). Reading thus
// overlaps committing, and a reader that outruns the committer waits
// instead of growing memory. The heartbeat goroutine (startHeartbeat)
// reports the queued records as buffered_records.
//
// The reader ends the stream with one terminal error: ErrEndOfInput,
// context.Canceled (a pause) or its failure.
type pump[T any] struct {
	queue   chan pumped[T]
	space   chan struct{} // signalled when queued records were freed
	queued  atomic.Int64  // records in the queue or taken but not freed
	limit   int64
	stop    context.CancelFunc
	done    chan struct{}
	release func(T) // drops an item never taken (at close)
}

// pumped is one queue entry: a batch of rows records, or the terminal
// error.
type pumped[T any] struct {
	v    T
	rows int64
	err  error
}

// startPump runs read in its own goroutine until it returns; its emit
// queues v (rows records) and blocks while the queue holds limit or more
// records, returning false once ctx is done (read should then return).
// read's return value is the terminal error (nil: context.Canceled).
// slots bounds the queue's entries too.
func startPump[T any](ctx context.Context, limit int64, slots int, release func(T),
	read func(ctx context.Context, emit func(v T, rows int64) bool) error) *pump[T] {
	rctx, stop := context.WithCancel(ctx)
	p := &pump[T]{queue: make(chan pumped[T], max(2, slots)), space: make(chan struct{}, 1),
		limit: max(1, limit), stop: stop, done: make(chan struct{}), release: release}
	emit := func(v T, rows int64) bool {
		for p.queued.Load() >= p.limit {
			select {
			case <-rctx.Done():
				return false
			case <-p.space:
			}
		}
		p.queued.Add(rows)
		select {
		case p.queue <- pumped[T]{v: v, rows: rows}:
			return true
		case <-rctx.Done():
			p.queued.Add(-rows)
			return false
		}
	}
	go func() {
		defer close(p.done)
		err := read(rctx, emit)
		if err == nil || rctx.Err() != nil {
			err = context.Canceled
		}
		p.queue <- pumped[T]{err: err} // taken by the activity or by close
	}()
	return p
}

// next returns the next entry, or ok false when deadline fires first
// (nil: wait for an entry).
func (p *pump[T]) next(deadline <-chan time.Time) (e pumped[T], ok bool) {
	select {
	case e = <-p.queue:
		return e, true
	case <-deadline:
		return e, false
	}
}

// freed says rows taken records left memory (committed, or handed to the
// destination): the reader may queue more.
func (p *pump[T]) freed(rows int64) {
	p.queued.Add(-rows)
	select {
	case p.space <- struct{}{}:
	default:
	}
}

// close stops the reader and waits for it, releasing what it still
// queues. The activity calls it before closing what the reader reads.
func (p *pump[T]) close() {
	p.stop()
	for {
		select {
		case <-p.done:
			for {
				select {
				case e := <-p.queue:
					if e.err == nil {
						p.release(e.v)
					}
				default:
					return
				}
			}
		case e := <-p.queue:
			if e.err == nil {
				p.release(e.v)
			}
		}
	}
}
