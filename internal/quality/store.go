package quality

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The store's buckets. pred holds one prediction per (request id,
// version); event holds one labelled row per (model, version, time, id,
// row), what the report reads; order indexes both by deadline, the time an
// entry is deleted, so expiry and eviction read it from the front. The
// predictions the tap keeps are indexed a group at a time (kindGroup): one
// order entry lists up to groupSize of them, which halves the tree inserts
// per kept prediction (bench/QUALITY.md).
var (
	bucketPred  = []byte("pred")
	bucketEvent = []byte("event")
	bucketOrder = []byte("order")
)

// Kinds of entries in the order index: one prediction, one labelled row,
// or a group of predictions (its value lists their keys).
const (
	kindPred  byte = 'p'
	kindEvent byte = 'e'
	kindGroup byte = 'g'
)

// A group holds at most groupSize predictions whose deadlines lie within
// groupSpan of its first: its entry fits one page (a key is about 40
// bytes), eviction takes predictions at most a group at a time, and a
// prediction is deleted at most groupSpan after its own deadline.
const (
	groupSize = 64
	groupSpan = int64(time.Second)
)

// StoreFile is the store's file name inside the state directory.
const StoreFile = "quality.db"

// openTimeout bounds the wait for the store's file lock: a second process
// on the same state directory fails instead of hanging.
const openTimeout = 2 * time.Second

// prediction is one version's answer to one request, as the store keeps
// it: a row per row of the request.
type prediction struct {
	model, version, id string
	// uid holds id when it is a UUID in canonical text (hasUID), which
	// Keep then need not copy: see appendID.
	uid      [16]byte
	hasUID   bool
	task     Task
	done     bool  // ground truth already received
	classes  int32 // class count of the output (0 for regression)
	at       int64 // arrival, Unix nanoseconds
	expires  int64 // feedback after it is "expired"
	deadline int64 // the entry is deleted then
	// key is the key lookup found it under, which a store written by an
	// earlier release may have made differently; nil for a new one.
	key []byte
	// One entry per row: the predicted class (classification, binary),
	// the positive-class score (binary), the predicted value (regression).
	pred  []int32
	score []float64
	value []float64
}

// event is one labelled row.
type event struct {
	at             int64
	task           Task
	actual, pred   int32
	score          float64 // binary: the positive-class score
	truth, value   float64 // regression
	model, version string
}

// store is the prediction store: bbolt (see STORE.md for why) with a byte
// bound. Safe for concurrent use; writes are serialised by bbolt and by mu,
// which also guards the pending predictions not yet committed.
type store struct {
	db       *bolt.DB
	maxBytes int64
	onEvict  func(reason string, n int)

	mu      sync.Mutex
	pending []prediction
	bytes   int64 // keys and values in every bucket
	// arena holds the keys and values of one commit: bbolt refers to
	// them until the commit ends, and the next commit reuses the space.
	arena []byte
}

// openStore opens (creating) the store in dir. maxBytes bounds the bytes
// of keys and values held; onEvict counts deletions by reason
// ("expired", "size").
func openStore(dir string, maxBytes int64, onEvict func(reason string, n int)) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, StoreFile)
	// The freelist is not written at each commit but rebuilt when the
	// file opens (etcd's setting for write-heavy stores): a commit writes
	// only the pages it changed. Each commit is still synced.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType, PageSize: 16384})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("prediction store %s: in use by another process", path)
		}
		return nil, fmt.Errorf("prediction store %s: %w", path, err)
	}
	s := &store{db: db, maxBytes: maxBytes, onEvict: onEvict}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPred, bucketEvent, bucketOrder} {
			b, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			if err := b.ForEach(func(k, v []byte) error { s.bytes += int64(len(k) + len(v)); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("prediction store %s: %w", path, err)
	}
	return s, nil
}

// close commits what is pending and closes the file.
func (s *store) close() error {
	err := s.flush()
	return errors.Join(err, s.db.Close())
}

// add queues p, which the next flush commits, and returns the number of
// predictions now waiting; ok is false, and p is not kept, when max wait
// already (the commits are failing).
func (s *store) add(p prediction, max int) (n int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= max {
		return len(s.pending), false
	}
	s.pending = append(s.pending, p)
	return len(s.pending), true
}

// pendingLen is the number of predictions waiting for a flush.
func (s *store) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// flush commits the pending predictions in one transaction, then evicts
// the oldest entries while the store is over its bound.
func (s *store) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.update(nil)
}

// update runs fn in a write transaction after committing what is pending;
// s.mu must be held.
func (s *store) update(fn func(w writer) error) error {
	if len(s.pending) == 0 && fn == nil {
		return nil
	}
	delta := int64(0)
	evicted := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := newWriter(tx, &delta)
		var err error
		if s.arena, err = w.putPending(s.pending, s.arena[:0]); err != nil {
			return err
		}
		if fn != nil {
			if err := fn(w); err != nil {
				return err
			}
		}
		for s.bytes+delta > s.maxBytes {
			n, ok, err := w.evictOldest()
			if err != nil || !ok {
				return err
			}
			evicted += n
		}
		return nil
	})
	if err != nil {
		return err
	}
	clear(s.pending) // drop the ids and rows they refer to
	s.pending = s.pending[:0]
	s.bytes += delta
	if evicted > 0 {
		s.onEvict("size", evicted)
	}
	return nil
}

// expire deletes every entry whose deadline is before now.
func (s *store) expire(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delta, n := int64(0), 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := newWriter(tx, &delta)
		c := w.order.Cursor()
		var keys [][]byte
		for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) < now.UnixNano(); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			d, err := w.deleteOrdered(k)
			if err != nil {
				return err
			}
			n += d
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.bytes += delta
	if n > 0 {
		s.onEvict("expired", n)
	}
	return nil
}

// size returns the bytes held.
func (s *store) size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// writer changes the buckets within one transaction and tracks the bytes
// it adds or removes. Its buckets are looked up once per transaction.
type writer struct {
	tx                 *bolt.Tx
	pred, event, order *bolt.Bucket
	delta              *int64
}

func newWriter(tx *bolt.Tx, delta *int64) writer {
	w := writer{tx: tx, pred: tx.Bucket(bucketPred), event: tx.Bucket(bucketEvent), order: tx.Bucket(bucketOrder), delta: delta}
	// Order and event keys begin with a time, so they arrive nearly in
	// key order: full pages split less and leave fewer to write.
	w.order.FillPercent, w.event.FillPercent, w.pred.FillPercent = 0.95, 0.95, 0.95
	return w
}

// put writes k. It does not look for an old value under k, which would
// cost a second search of the tree: the keys it writes are new but for a
// prediction whose request id a client reused, and then the bytes counted
// stay above what is held (the bound is kept early, never late) until the
// next open counts them again.
func (w writer) put(b *bolt.Bucket, k, v []byte) error {
	*w.delta += int64(len(k) + len(v))
	return b.Put(k, v)
}

// del deletes k and reports whether it was there.
func (w writer) del(b *bolt.Bucket, k []byte) (bool, error) {
	if old := b.Get(k); old != nil {
		*w.delta -= int64(len(k) + len(old))
		return true, b.Delete(k)
	}
	return false, nil
}

// replace writes k over the value it may hold, counting the bytes it
// frees.
func (w writer) replace(b *bolt.Bucket, k, v []byte) error {
	if old := b.Get(k); old != nil {
		*w.delta -= int64(len(k) + len(old))
	}
	*w.delta += int64(len(k) + len(v))
	return b.Put(k, v)
}

// putPred writes p; index adds its order entry (a new prediction), else p
// replaces the stored one (marked labelled by feedback).
func (w writer) putPred(p *prediction, index bool) error {
	k := p.key
	if k == nil {
		k = predKey(p.id, p.version)
	}
	if !index {
		return w.replace(w.pred, k, encodePred(p))
	}
	if err := w.put(w.pred, k, encodePred(p)); err != nil {
		return err
	}
	return w.put(w.order, orderKey(p.deadline, kindPred, k), orderValue)
}

// putEvent writes one labelled row, deleted after deadline.
func (w writer) putEvent(e *event, id string, row int, deadline int64) error {
	k := eventKey(e.model, e.version, e.at, id, row)
	if err := w.put(w.event, k, encodeEvent(e)); err != nil {
		return err
	}
	return w.put(w.order, orderKey(deadline, kindEvent, k), orderValue)
}

// putPending writes the predictions the tap kept, sorted by deadline, in
// groups of one order entry each. Their keys and values are laid out in
// arena, returned grown, which must stay untouched until the commit ends.
func (w writer) putPending(ps []prediction, arena []byte) ([]byte, error) {
	if len(ps) == 0 {
		return arena, nil
	}
	slices.SortFunc(ps, func(a, b prediction) int { return cmp.Compare(a.deadline, b.deadline) })
	for start := 0; start < len(ps); {
		end := start + 1
		for end < len(ps) && end-start < groupSize && ps[end].deadline-ps[start].deadline <= groupSpan {
			end++
		}
		// The group's entry: its latest deadline, then a number bbolt
		// keeps per bucket, so no two groups share a key.
		seq, err := w.order.NextSequence()
		if err != nil {
			return arena, err
		}
		ok := len(arena)
		arena = binary.BigEndian.AppendUint64(arena, uint64(max(ps[end-1].deadline, 0)))
		arena = binary.BigEndian.AppendUint64(append(arena, kindGroup), seq)
		// The group's value lists its members' keys, each behind its
		// length; the predictions are put under those same bytes.
		ov := len(arena)
		for i := start; i < end; i++ {
			at := len(arena)
			arena = appendPredKey(append(arena, 0, 0), &ps[i])
			binary.BigEndian.PutUint16(arena[at:], uint16(len(arena)-at-2))
		}
		members := len(arena)
		for at := ov; at < members; {
			k := arena[at+2 : at+2+int(binary.BigEndian.Uint16(arena[at:]))]
			at += 2 + len(k)
			v := len(arena)
			arena = appendPred(arena, &ps[start])
			start++
			if err := w.put(w.pred, k[:len(k):len(k)], arena[v:len(arena):len(arena)]); err != nil {
				return arena, err
			}
		}
		if err := w.put(w.order, arena[ok:ov:ov], arena[ov:members:members]); err != nil {
			return arena, err
		}
	}
	return arena, nil
}

// deleteOrdered deletes the entries an order key points at, and the key;
// it returns how many it deleted.
func (w writer) deleteOrdered(ok []byte) (int, error) {
	n, err := 0, error(nil)
	switch ok[8] {
	case kindEvent:
		n, err = w.delCount(w.event, ok[9:])
	case kindGroup:
		n, err = w.deleteGroup(w.order.Get(ok))
	default:
		n, err = w.delCount(w.pred, ok[9:])
	}
	if err != nil {
		return n, err
	}
	_, err = w.del(w.order, ok)
	return n, err
}

// delCount deletes k and returns 1 when it was there.
func (w writer) delCount(b *bolt.Bucket, k []byte) (int, error) {
	if ok, err := w.del(b, k); !ok || err != nil {
		return 0, err
	}
	return 1, nil
}

// deleteGroup deletes the predictions a group entry lists and returns how
// many were there.
func (w writer) deleteGroup(list []byte) (int, error) {
	// The list is in bbolt's memory, which deletes may move: walk a copy.
	list = bytes.Clone(list)
	n := 0
	for len(list) >= 2 {
		l := int(binary.BigEndian.Uint16(list))
		if len(list) < 2+l {
			return n, errCorrupt
		}
		d, err := w.delCount(w.pred, list[2:2+l])
		if err != nil {
			return n, err
		}
		n += d
		list = list[2+l:]
	}
	return n, nil
}

// groupLen returns the number of keys a group entry lists.
func groupLen(list []byte) (int, error) {
	n := 0
	for len(list) >= 2 {
		l := int(binary.BigEndian.Uint16(list))
		if len(list) < 2+l {
			return n, errCorrupt
		}
		n++
		list = list[2+l:]
	}
	if len(list) != 0 {
		return n, errCorrupt
	}
	return n, nil
}

// evictOldest deletes the entry with the earliest deadline (a group: all
// its predictions) and returns how many it deleted; ok is false when the
// store is empty.
func (w writer) evictOldest() (n int, ok bool, err error) {
	k, _ := w.order.Cursor().First()
	if k == nil {
		return 0, false, nil
	}
	n, err = w.deleteOrdered(bytes.Clone(k))
	return n, true, err
}

// lookup returns the predictions stored under id, every version.
func lookup(tx *bolt.Tx, id string) ([]prediction, error) {
	out, err := lookupPrefix(tx, id, predKey(id, ""))
	if len(out) == 0 && err == nil && isUUID(id) {
		// A store written before UUIDs were keyed by their bytes.
		out, err = lookupPrefix(tx, id, appendString(nil, id))
	}
	return out, err
}

func lookupPrefix(tx *bolt.Tx, id string, prefix []byte) ([]prediction, error) {
	var out []prediction
	c := tx.Bucket(bucketPred).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		p, err := decodePred(v)
		if err != nil {
			return nil, fmt.Errorf("prediction %q: %w", id, err)
		}
		p.id, p.key = id, bytes.Clone(k)
		p.version = string(k[len(prefix):])
		out = append(out, p)
	}
	return out, nil
}

// events returns the labelled rows of model at or after since, by version.
func (s *store) events(model string, since int64) (map[string][]event, error) {
	out := map[string][]event{}
	prefix := appendString(nil, model)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvent).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			e, err := decodeEvent(v)
			if err != nil {
				return err
			}
			if e.at < since {
				continue
			}
			ver, _, ok := readString(k[len(prefix):])
			if !ok {
				return errCorrupt
			}
			e.model, e.version = model, ver
			out[ver] = append(out[ver], e)
		}
		return nil
	})
	return out, err
}

var errCorrupt = errors.New("corrupt store entry")

// predKey is the id (appendID) and the version: one id's versions share
// a prefix no other id has.
func predKey(id, version string) []byte {
	return append(appendID(make([]byte, 0, 4+len(id)+len(version)), id), version...)
}

// appendPredKey appends p's predKey to b.
func appendPredKey(b []byte, p *prediction) []byte {
	if p.hasUID {
		b = append(append(b, uuidMarker...), p.uid[:]...)
	} else {
		b = appendID(b, p.id)
	}
	return append(b, p.version...)
}

// uuidMarker leads the key of an id that is a UUID in canonical text (the
// ids the server makes): its 16 bytes follow, which shortens the key from
// 38 bytes to 18, so a commit writes fewer pages. No other id is that
// long (MaxIDLen), so the marker cannot be read as a length.
var uuidMarker = []byte{0xff, 0xff}

// appendID appends id's key form: uuidMarker and the UUID's bytes, or the
// id's length and bytes.
func appendID(b []byte, id string) []byte {
	if u, ok := parseUUID(id); ok {
		return append(append(b, uuidMarker...), u[:]...)
	}
	return appendString(b, id)
}

// isUUID reports whether id is a UUID in canonical text: 36 characters,
// lowercase hex digits with dashes at 8, 13, 18 and 23. Other spellings
// of the same UUID are other ids, kept as text.
func isUUID(id string) bool {
	_, ok := parseUUID(id)
	return ok
}

func parseUUID(id string) (u [16]byte, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return u, false
	}
	bad := byte(0)
	for j, i := range uuidPairs {
		hi, lo := hexValue[id[i]], hexValue[id[i+1]]
		bad |= hi | lo
		u[j] = hi<<4 | lo
	}
	return u, bad&0xf0 == 0
}

// uuidPairs are the offsets of a canonical UUID's 16 hex pairs.
var uuidPairs = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// hexValue maps a lowercase hex digit to its value and any other byte to
// 0xff, so one OR over a UUID's digits tells whether all were digits.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

func eventKey(model, version string, at int64, id string, row int) []byte {
	k := appendString(nil, model)
	k = appendString(k, version)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	k = appendString(k, id)
	return binary.BigEndian.AppendUint32(k, uint32(row))
}

func orderKey(deadline int64, kind byte, key []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 9+len(key)), uint64(max(deadline, 0)))
	return append(append(k, kind), key...)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}

// encodePred lays out a prediction: model, task, flags, times, classes,
// rows, then each row's fields the task uses.
func encodePred(p *prediction) []byte {
	return appendPred(make([]byte, 0, 40+len(p.model)+16*len(p.pred)+8*len(p.value)), p)
}

// appendPred appends p's encoding to b.
func appendPred(b []byte, p *prediction) []byte {
	b = appendString(b, p.model)
	flags := byte(0)
	if p.done {
		flags = 1
	}
	b = append(b, byte(p.task), flags)
	b = binary.BigEndian.AppendUint64(b, uint64(p.at))
	b = binary.BigEndian.AppendUint64(b, uint64(p.expires))
	b = binary.BigEndian.AppendUint64(b, uint64(p.deadline))
	b = binary.BigEndian.AppendUint32(b, uint32(p.classes))
	rows := len(p.pred)
	if p.task == TaskRegression {
		rows = len(p.value)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(rows))
	for i := range rows {
		switch p.task {
		case TaskRegression:
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(p.value[i]))
		case TaskBinary:
			b = binary.BigEndian.AppendUint32(b, uint32(p.pred[i]))
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(p.score[i]))
		default:
			b = binary.BigEndian.AppendUint32(b, uint32(p.pred[i]))
		}
	}
	return b
}

func decodePred(b []byte) (prediction, error) {
	var p prediction
	model, b, ok := readString(b)
	if !ok || len(b) < 2+24+8 {
		return p, errCorrupt
	}
	p.model, p.task, p.done = model, Task(b[0]), b[1]&1 != 0
	b = b[2:]
	p.at = int64(binary.BigEndian.Uint64(b))
	p.expires = int64(binary.BigEndian.Uint64(b[8:]))
	p.deadline = int64(binary.BigEndian.Uint64(b[16:]))
	p.classes = int32(binary.BigEndian.Uint32(b[24:]))
	rows := int(binary.BigEndian.Uint32(b[28:]))
	b = b[32:]
	per := map[Task]int{TaskClassification: 4, TaskBinary: 12, TaskRegression: 8}[p.task]
	if per == 0 || len(b) != rows*per {
		return p, errCorrupt
	}
	for i := 0; i < rows; i++ {
		switch p.task {
		case TaskRegression:
			p.value = append(p.value, math.Float64frombits(binary.BigEndian.Uint64(b)))
		case TaskBinary:
			p.pred = append(p.pred, int32(binary.BigEndian.Uint32(b)))
			p.score = append(p.score, math.Float64frombits(binary.BigEndian.Uint64(b[4:])))
		default:
			p.pred = append(p.pred, int32(binary.BigEndian.Uint32(b)))
		}
		b = b[per:]
	}
	return p, nil
}

func encodeEvent(e *event) []byte {
	b := make([]byte, 0, 41)
	b = append(b, byte(e.task))
	b = binary.BigEndian.AppendUint64(b, uint64(e.at))
	b = binary.BigEndian.AppendUint32(b, uint32(e.actual))
	b = binary.BigEndian.AppendUint32(b, uint32(e.pred))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(e.score))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(e.truth))
	return binary.BigEndian.AppendUint64(b, math.Float64bits(e.value))
}

func decodeEvent(b []byte) (event, error) {
	if len(b) != 41 {
		return event{}, errCorrupt
	}
	return event{
		task:   Task(b[0]),
		at:     int64(binary.BigEndian.Uint64(b[1:])),
		actual: int32(binary.BigEndian.Uint32(b[9:])),
		pred:   int32(binary.BigEndian.Uint32(b[13:])),
		score:  math.Float64frombits(binary.BigEndian.Uint64(b[17:])),
		truth:  math.Float64frombits(binary.BigEndian.Uint64(b[25:])),
		value:  math.Float64frombits(binary.BigEndian.Uint64(b[33:])),
	}, nil
}

// orderValue is every order entry's value: bbolt's Get cannot tell an
// empty value from a missing key.
var orderValue = []byte{1}
