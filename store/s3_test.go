package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/internal/fixture"
)

// TestS3ConcurrentWriters is TestConcurrentWriters on S3: a versitygw
// server, which honours conditional writes. Commits are conditional
// PutObjects (If-None-Match: *): of two writers of one version exactly
// one wins, and every commit number of every connector is in the table
// exactly once.
func TestS3ConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	o := testOptions()
	o.S3 = fixture.Versitygw(t, "lake")
	loc := "s3://lake/tables/p/t"

	st, err := delta.NewStorage(ctx, loc, o.S3)
	require.NoError(t, err)
	require.NoError(t, st.PutIfAbsent(ctx, "probe", []byte("a")))
	require.ErrorIs(t, st.PutIfAbsent(ctx, "probe", []byte("b")), delta.ErrExist, "the server refuses a second If-None-Match: * write")
	got, err := st.ReadFile(ctx, "probe")
	require.NoError(t, err)
	require.Equal(t, "a", string(got))
	require.NoError(t, st.Delete(ctx, "probe"))

	_, err = Open(ctx, loc, o)
	require.True(t, errors.Is(err, ErrNotFound), "no table yet: %v", err)
	var wg sync.WaitGroup
	tables := make([]*Table, 4)
	for i := range tables { // concurrent creators agree on one table
		wg.Add(1)
		go func() {
			defer wg.Done()
			tbl, err := Create(ctx, loc, "t", testSchema, o)
			require.NoError(t, err)
			tables[i] = tbl
		}()
	}
	wg.Wait()
	for _, tbl := range tables {
		require.Equal(t, tables[0].ID(), tbl.ID())
	}

	const target = 12
	errs := make(chan error, 8)
	for _, conn := range []string{"a", "b"} {
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- writeUntil(ctx, loc, conn, int64(w), target, o)
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	tbl, err := Open(ctx, loc, o)
	require.NoError(t, err)
	want := map[string]int{}
	for _, conn := range []string{"a", "b"} {
		for n := 1; n <= target; n++ {
			want[fmt.Sprintf("%s/%d", conn, n)] = 3
		}
	}
	require.Equal(t, want, counts(t, tbl, true), "change stream")
	require.Equal(t, want, counts(t, tbl, false), "snapshot")
	cp, err := delta.LastCheckpointVersion(ctx, tbl.Storage())
	require.NoError(t, err)
	require.Greater(t, cp, int64(0), "log checkpoints on S3")
}
