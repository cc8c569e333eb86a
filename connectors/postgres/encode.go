package postgres

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// PostgreSQL type OIDs the encoders write (pg_type.dat).
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestampTZ = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// Days and microseconds between 1970-01-01 (Arrow's epoch) and 2000-01-01
// (PostgreSQL's).
const (
	pgEpochDays   = 10957
	pgEpochMicros = pgEpochDays * 86400 * 1_000_000
)

// copyHeader starts a COPY ... FROM STDIN (FORMAT binary) stream:
// signature, flags, header extension length.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// encoder appends the binary COPY field (length, then bytes; -1 for NULL)
// of one row of a column.
type encoder func(buf []byte, row int) []byte

// fits reports whether a column of Arrow type dt can be written to a
// PostgreSQL column of type oid, without losing values.
func fits(dt arrow.DataType, oid uint32) bool {
	switch dt.ID() {
	case arrow.BOOL:
		return oid == oidBool
	case arrow.INT8, arrow.INT16:
		return oid == oidInt2 || oid == oidInt4 || oid == oidInt8 || oid == oidNumeric
	case arrow.INT32:
		return oid == oidInt4 || oid == oidInt8 || oid == oidNumeric
	case arrow.INT64:
		return oid == oidInt8 || oid == oidNumeric
	case arrow.FLOAT32:
		return oid == oidFloat4 || oid == oidFloat8
	case arrow.FLOAT64:
		return oid == oidFloat8
	case arrow.DECIMAL128:
		return oid == oidNumeric
	case arrow.STRING, arrow.LARGE_STRING:
		return oid == oidText || oid == oidVarchar || oid == oidBPChar || oid == oidJSON || oid == oidJSONB
	case arrow.BINARY, arrow.LARGE_BINARY:
		return oid == oidBytea
	case arrow.DATE32:
		return oid == oidDate
	case arrow.TIME32, arrow.TIME64:
		return oid == oidTime
	case arrow.TIMESTAMP:
		return oid == oidTimestamp || oid == oidTimestampTZ
	}
	return false
}

// fittingTypes names the PostgreSQL types an Arrow type fits, for messages.
func fittingTypes(dt arrow.DataType) string {
	switch dt.ID() {
	case arrow.BOOL:
		return "boolean"
	case arrow.INT8, arrow.INT16:
		return "smallint, integer, bigint or numeric"
	case arrow.INT32:
		return "integer, bigint or numeric"
	case arrow.INT64:
		return "bigint or numeric"
	case arrow.FLOAT32:
		return "real or double precision"
	case arrow.FLOAT64:
		return "double precision"
	case arrow.DECIMAL128:
		return "numeric"
	case arrow.STRING, arrow.LARGE_STRING:
		return "text, varchar, char, json or jsonb"
	case arrow.BINARY, arrow.LARGE_BINARY:
		return "bytea"
	case arrow.DATE32:
		return "date"
	case arrow.TIME32, arrow.TIME64:
		return "time"
	case arrow.TIMESTAMP:
		return "timestamp or timestamptz"
	}
	return "none (unsupported Arrow type)"
}

func putLen(buf []byte, n int) []byte { return binary.BigEndian.AppendUint32(buf, uint32(int32(n))) }

var null = []byte{0xff, 0xff, 0xff, 0xff}

// newEncoder returns the encoder of column arr into PostgreSQL type oid;
// fits(arr.DataType(), oid) must hold.
func newEncoder(arr arrow.Array, oid uint32) (encoder, error) {
	nulls := arr.NullN() > 0
	wrap := func(e encoder) encoder {
		if !nulls {
			return e
		}
		return func(buf []byte, i int) []byte {
			if arr.IsNull(i) {
				return append(buf, null...)
			}
			return e(buf, i)
		}
	}
	intEnc := func(get func(int) int64) encoder {
		switch oid {
		case oidInt2:
			return func(buf []byte, i int) []byte {
				return binary.BigEndian.AppendUint16(append(buf, 0, 0, 0, 2), uint16(get(i)))
			}
		case oidInt4:
			return func(buf []byte, i int) []byte {
				return binary.BigEndian.AppendUint32(append(buf, 0, 0, 0, 4), uint32(get(i)))
			}
		case oidInt8:
			return func(buf []byte, i int) []byte {
				return binary.BigEndian.AppendUint64(append(buf, 0, 0, 0, 8), uint64(get(i)))
			}
		case oidNumeric:
			return func(buf []byte, i int) []byte {
				v := get(i)
				neg := v < 0
				u := uint64(v)
				if neg {
					u = -u
				}
				return appendNumeric(buf, 0, u, neg, 0)
			}
		}
		return nil
	}
	var e encoder
	switch a := arr.(type) {
	case *array.Boolean:
		e = func(buf []byte, i int) []byte {
			b := byte(0)
			if a.Value(i) {
				b = 1
			}
			return append(buf, 0, 0, 0, 1, b)
		}
	case *array.Int8:
		e = intEnc(func(i int) int64 { return int64(a.Value(i)) })
	case *array.Int16:
		e = intEnc(func(i int) int64 { return int64(a.Value(i)) })
	case *array.Int32:
		e = intEnc(func(i int) int64 { return int64(a.Value(i)) })
	case *array.Int64:
		e = intEnc(func(i int) int64 { return a.Value(i) })
	case *array.Float32:
		if oid == oidFloat4 {
			e = func(buf []byte, i int) []byte {
				return binary.BigEndian.AppendUint32(append(buf, 0, 0, 0, 4), math.Float32bits(a.Value(i)))
			}
		} else {
			e = func(buf []byte, i int) []byte {
				return binary.BigEndian.AppendUint64(append(buf, 0, 0, 0, 8), math.Float64bits(float64(a.Value(i))))
			}
		}
	case *array.Float64:
		e = func(buf []byte, i int) []byte {
			return binary.BigEndian.AppendUint64(append(buf, 0, 0, 0, 8), math.Float64bits(a.Value(i)))
		}
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		e = func(buf []byte, i int) []byte {
			v := a.Value(i)
			neg := v.Sign() < 0
			if neg {
				v = v.Negate()
			}
			return appendNumeric(buf, uint64(v.HighBits()), v.LowBits(), neg, int(scale))
		}
	case *array.String:
		e = textEnc(a.Value, oid)
	case *array.LargeString:
		e = textEnc(a.Value, oid)
	case *array.Binary:
		e = func(buf []byte, i int) []byte {
			v := a.Value(i)
			return append(putLen(buf, len(v)), v...)
		}
	case *array.LargeBinary:
		e = func(buf []byte, i int) []byte {
			v := a.Value(i)
			return append(putLen(buf, len(v)), v...)
		}
	case *array.Date32:
		e = func(buf []byte, i int) []byte {
			return binary.BigEndian.AppendUint32(append(buf, 0, 0, 0, 4), uint32(int32(a.Value(i))-pgEpochDays))
		}
	case *array.Time32:
		mul := int64(1000) // ms
		if a.DataType().(*arrow.Time32Type).Unit == arrow.Second {
			mul = 1_000_000
		}
		e = func(buf []byte, i int) []byte {
			return binary.BigEndian.AppendUint64(append(buf, 0, 0, 0, 8), uint64(int64(a.Value(i))*mul))
		}
	case *array.Time64:
		div := int64(1)
		if a.DataType().(*arrow.Time64Type).Unit == arrow.Nanosecond {
			div = 1000
		}
		e = func(buf []byte, i int) []byte {
			return binary.BigEndian.AppendUint64(append(buf, 0, 0, 0, 8), uint64(int64(a.Value(i))/div))
		}
	case *array.Timestamp:
		toMicros := micros(a.DataType().(*arrow.TimestampType).Unit)
		e = func(buf []byte, i int) []byte {
			return binary.BigEndian.AppendUint64(append(buf, 0, 0, 0, 8), uint64(toMicros(int64(a.Value(i)))-pgEpochMicros))
		}
	}
	if e == nil {
		return nil, fmt.Errorf("no encoder from %s to type oid %d", arr.DataType(), oid)
	}
	return wrap(e), nil
}

func textEnc(value func(int) string, oid uint32) encoder {
	if oid == oidJSONB { // jsonb's binary form: version 1, then the text
		return func(buf []byte, i int) []byte {
			v := value(i)
			return append(append(putLen(buf, len(v)+1), 1), v...)
		}
	}
	return func(buf []byte, i int) []byte {
		v := value(i)
		return append(putLen(buf, len(v)), v...)
	}
}

func micros(u arrow.TimeUnit) func(int64) int64 {
	switch u {
	case arrow.Second:
		return func(v int64) int64 { return v * 1_000_000 }
	case arrow.Millisecond:
		return func(v int64) int64 { return v * 1000 }
	case arrow.Nanosecond:
		return func(v int64) int64 { return floorDiv(v, 1000) }
	}
	return func(v int64) int64 { return v }
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

// appendNumeric appends the binary numeric of the unsigned 128-bit value
// hi:lo with scale decimal digits after the point, negative if neg:
// ndigits, weight, sign, dscale, then base-10000 digits.
func appendNumeric(buf []byte, hi, lo uint64, neg bool, scale int) []byte {
	// Decimal digits of hi:lo, most significant first.
	var dec [40]byte
	n := len(dec)
	for hi != 0 || lo != 0 {
		var r uint64
		hi, r = bits.Div64(0, hi, 1e19)
		lo, r = bits.Div64(r, lo, 1e19)
		for k := 0; k < 19 && n > 0; k++ {
			n--
			dec[n] = byte(r % 10)
			r /= 10
		}
	}
	digits := dec[n:]
	// Strip leading zeros left by the 19-digit chunks.
	for len(digits) > 0 && digits[0] == 0 {
		digits = digits[1:]
	}
	sign := uint16(0)
	if neg && len(digits) > 0 {
		sign = 0x4000
	}
	if len(digits) == 0 {
		buf = putLen(buf, 8)
		return append(buf, 0, 0, 0, 0, 0, 0, byte(scale>>8), byte(scale))
	}
	// Integer part I and fraction F (scale digits), padded to whole
	// base-10000 groups: I on the left, F on the right.
	var ip, fp []byte
	if len(digits) > scale {
		ip, fp = digits[:len(digits)-scale], digits[len(digits)-scale:]
	} else {
		fp = append(make([]byte, scale-len(digits), scale+3), digits...)
	}
	padded := make([]byte, 0, len(ip)+len(fp)+6)
	for k := 0; k < (4-len(ip)%4)%4; k++ {
		padded = append(padded, 0)
	}
	padded = append(padded, ip...)
	weight := len(padded)/4 - 1
	padded = append(padded, fp...)
	for len(padded)%4 != 0 {
		padded = append(padded, 0)
	}
	groups := make([]int16, 0, len(padded)/4)
	for k := 0; k < len(padded); k += 4 {
		groups = append(groups, int16(padded[k])*1000+int16(padded[k+1])*100+int16(padded[k+2])*10+int16(padded[k+3]))
	}
	for len(groups) > 0 && groups[0] == 0 {
		groups = groups[1:]
		weight--
	}
	for len(groups) > 0 && groups[len(groups)-1] == 0 {
		groups = groups[:len(groups)-1]
	}
	buf = putLen(buf, 8+2*len(groups))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(groups)))
	buf = binary.BigEndian.AppendUint16(buf, uint16(int16(weight)))
	buf = binary.BigEndian.AppendUint16(buf, sign)
	buf = binary.BigEndian.AppendUint16(buf, uint16(scale))
	for _, g := range groups {
		buf = binary.BigEndian.AppendUint16(buf, uint16(g))
	}
	return buf
}

// tsField encodes t into the cdc timestamp column's type: timestamp or
// timestamptz (microseconds since 2000-01-01) or bigint (microseconds
// since 1970-01-01).
func tsField(t time.Time, oid uint32) []byte {
	us := t.UnixMicro()
	if oid == oidTimestamp || oid == oidTimestampTZ {
		us -= pgEpochMicros
	}
	if oid == oidText || oid == oidVarchar {
		s := t.UTC().Format(time.RFC3339Nano)
		return append(putLen(nil, len(s)), s...)
	}
	return binary.BigEndian.AppendUint64(putLen(nil, 8), uint64(us))
}

// opField encodes the cdc operation letter into a text-like column.
func opField(op byte) []byte { return []byte{0, 0, 0, 1, op} }
