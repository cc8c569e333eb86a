// Package predicate parses and evaluates the SQL row filters of the
// lakehouse sources (delta_table_input's filter and snapshot_filter,
// iceberg_input's snapshot_filter, as Feldera names them) over Arrow
// record batches with arrow-go's compute functions.
package predicate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/scalar"
)

// Predicate is a parsed filter: a boolean SQL expression over a table's
// columns. The grammar is a small part of SQL:
//
//	expr    = and { OR and }
//	and     = not { AND not }
//	not     = NOT not | primary
//	primary = "(" expr ")"
//	        | operand ( "=" | "<>" | "!=" | "<" | "<=" | ">" | ">=" ) operand
//	        | operand IS [NOT] NULL
//	        | operand [NOT] BETWEEN operand AND operand
//	        | operand [NOT] IN "(" operand { "," operand } ")"
//	operand = column | number | 'string' | TRUE | FALSE
//	        | DATE 'yyyy-mm-dd' | TIMESTAMP 'yyyy-mm-dd hh:mm:ss'
//
// Keywords are case-insensitive; columns are names or "quoted names".
// Rows for which the expression is false or NULL are dropped, as in SQL.
type Predicate struct{ root node }

// node is a boolean expression.
type node interface {
	eval(ctx context.Context, rec arrow.RecordBatch) (compute.Datum, error)
}

type (
	logical struct {
		op   string // and_kleene, or_kleene
		l, r node
	}
	not        struct{ p node }
	comparison struct {
		op   string // equal, not_equal, less, ...
		l, r operand
	}
	isNull struct {
		o      operand
		negate bool
	}
	// operand is a column (index >= 0) or a literal.
	operand struct {
		col  int
		name string
		lit  scalar.Scalar
		text string         // a number literal as written, for exact decimals
		typ  arrow.DataType // the column's type
	}
)

// datum returns the operand for a compute call; the caller releases it.
func (o operand) datum(rec arrow.RecordBatch) compute.Datum {
	if o.col >= 0 {
		return compute.NewDatum(rec.Column(o.col))
	}
	return compute.NewDatum(o.lit)
}

func (p logical) eval(ctx context.Context, rec arrow.RecordBatch) (compute.Datum, error) {
	l, err := p.l.eval(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer l.Release()
	r, err := p.r.eval(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer r.Release()
	return compute.CallFunction(ctx, p.op, nil, l, r)
}

func (p not) eval(ctx context.Context, rec arrow.RecordBatch) (compute.Datum, error) {
	d, err := p.p.eval(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer d.Release()
	return compute.CallFunction(ctx, "not", nil, d)
}

func (p comparison) eval(ctx context.Context, rec arrow.RecordBatch) (compute.Datum, error) {
	l, r := p.l.datum(rec), p.r.datum(rec)
	defer l.Release()
	defer r.Release()
	return compute.CallFunction(ctx, p.op, nil, l, r)
}

// eval builds the mask from the validity bitmap itself: arrow-go's
// is_null kernel panics on decimal columns (v18.8.0).
func (p isNull) eval(ctx context.Context, rec arrow.RecordBatch) (compute.Datum, error) {
	if p.o.col < 0 {
		return compute.NewDatum(scalar.NewBooleanScalar(p.o.lit.IsValid() == p.negate)), nil
	}
	col := rec.Column(p.o.col)
	b := array.NewBooleanBuilder(compute.GetAllocator(ctx))
	defer b.Release()
	b.Reserve(col.Len())
	for i := range col.Len() {
		b.UnsafeAppend(col.IsNull(i) != p.negate)
	}
	a := b.NewArray()
	defer a.Release()
	return compute.NewDatum(a), nil
}

// Parse parses a filter against the table schema, whose column names it
// may use (case-insensitively, or exactly when "quoted"). Literals are
// cast to the type of the column they are compared with. Errors name the
// offending token and its position ("unknown column "x" at character 5").
func Parse(src string, schema *arrow.Schema) (*Predicate, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, schema: schema}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q at character %d", p.toks[p.pos].text, p.toks[p.pos].at+1)
	}
	return &Predicate{e}, nil
}

type token struct {
	kind byte // 'i' identifier or keyword, 'q' quoted identifier, 's' string, 'n' number, 'o' operator or punctuation
	text string
	at   int
}

func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '\'' || c == '"':
			j := i + 1
			var b strings.Builder
			for ; j < len(s); j++ {
				if rune(s[j]) == c {
					if j+1 < len(s) && rune(s[j+1]) == c { // '' is a quote
						b.WriteByte(s[j])
						j++
						continue
					}
					break
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated %c at character %d", c, i+1)
			}
			kind := byte('s')
			if c == '"' {
				kind = 'q'
			}
			out = append(out, token{kind, b.String(), i})
			i = j + 1
		case unicode.IsDigit(c) || (c == '-' && i+1 < len(s) && unicode.IsDigit(rune(s[i+1])) && lastIsOperator(out)) || c == '.':
			j := i + 1
			for j < len(s) && (unicode.IsDigit(rune(s[j])) || s[j] == '.' || s[j] == 'e' || s[j] == 'E') {
				j++
			}
			out = append(out, token{'n', s[i:j], i})
			i = j
		case unicode.IsLetter(c) || c == '_':
			j := i + 1
			for j < len(s) && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])) || s[j] == '_') {
				j++
			}
			out = append(out, token{'i', s[i:j], i})
			i = j
		default:
			for _, op := range []string{"<=", ">=", "<>", "!=", "=", "<", ">", "(", ")", ","} {
				if strings.HasPrefix(s[i:], op) {
					out = append(out, token{'o', op, i})
					i += len(op)
					goto next
				}
			}
			return nil, fmt.Errorf("unexpected %q at character %d", c, i+1)
		next:
		}
	}
	return out, nil
}

func lastIsOperator(toks []token) bool {
	return len(toks) == 0 || toks[len(toks)-1].kind == 'o' || isKeyword(toks[len(toks)-1], "AND", "OR", "NOT", "BETWEEN")
}

func isKeyword(t token, kws ...string) bool {
	if t.kind != 'i' {
		return false
	}
	for _, k := range kws {
		if strings.EqualFold(t.text, k) {
			return true
		}
	}
	return false
}

type parser struct {
	toks   []token
	pos    int
	schema *arrow.Schema
}

func (p *parser) peek() (token, bool) {
	if p.pos >= len(p.toks) {
		return token{}, false
	}
	return p.toks[p.pos], true
}

func (p *parser) keyword(kw string) bool {
	if t, ok := p.peek(); ok && isKeyword(t, kw) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) punct(op string) bool {
	if t, ok := p.peek(); ok && t.kind == 'o' && t.text == op {
		p.pos++
		return true
	}
	return false
}

func (p *parser) errExpected(what string) error {
	if t, ok := p.peek(); ok {
		return fmt.Errorf("expected %s at character %d, found %q", what, t.at+1, t.text)
	}
	return fmt.Errorf("expected %s at the end", what)
}

func (p *parser) expr() (node, error) {
	l, err := p.and()
	for err == nil && p.keyword("OR") {
		var r node
		if r, err = p.and(); err == nil {
			l = logical{"or_kleene", l, r}
		}
	}
	return l, err
}

func (p *parser) and() (node, error) {
	l, err := p.not()
	for err == nil && p.keyword("AND") {
		var r node
		if r, err = p.not(); err == nil {
			l = logical{"and_kleene", l, r}
		}
	}
	return l, err
}

func (p *parser) not() (node, error) {
	if p.keyword("NOT") {
		e, err := p.not()
		return not{e}, err
	}
	return p.primary()
}

var comparisons = map[string]string{"=": "equal", "<>": "not_equal", "!=": "not_equal", "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal"}

func (p *parser) primary() (node, error) {
	if p.punct("(") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		if !p.punct(")") {
			return nil, p.errExpected(`")"`)
		}
		return e, nil
	}
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	if p.keyword("IS") {
		negate := p.keyword("NOT")
		if !p.keyword("NULL") {
			return nil, p.errExpected("NULL")
		}
		return isNull{l, negate}, nil
	}
	negate := p.keyword("NOT")
	switch {
	case p.keyword("BETWEEN"):
		lo, err := p.operand()
		if err != nil {
			return nil, err
		}
		if !p.keyword("AND") {
			return nil, p.errExpected("AND")
		}
		hi, err := p.operand()
		if err != nil {
			return nil, err
		}
		a, err := p.compare(">=", l, lo)
		if err != nil {
			return nil, err
		}
		b, err := p.compare("<=", l, hi)
		if err != nil {
			return nil, err
		}
		return negated(logical{"and_kleene", a, b}, negate), nil
	case p.keyword("IN"):
		if !p.punct("(") {
			return nil, p.errExpected(`"("`)
		}
		var e node
		for {
			o, err := p.operand()
			if err != nil {
				return nil, err
			}
			c, err := p.compare("=", l, o)
			if err != nil {
				return nil, err
			}
			if e == nil {
				e = c
			} else {
				e = logical{"or_kleene", e, c}
			}
			if p.punct(")") {
				return negated(e, negate), nil
			}
			if !p.punct(",") {
				return nil, p.errExpected(`"," or ")"`)
			}
		}
	case negate:
		return nil, p.errExpected("BETWEEN or IN after NOT")
	}
	t, ok := p.peek()
	if !ok || t.kind != 'o' || comparisons[t.text] == "" {
		return nil, p.errExpected("a comparison (=, <>, <, <=, >, >=, IS, BETWEEN, IN)")
	}
	p.pos++
	r, err := p.operand()
	if err != nil {
		return nil, err
	}
	return p.compare(t.text, l, r)
}

func negated(e node, negate bool) node {
	if negate {
		return not{e}
	}
	return e
}

// compare builds a comparison, casting a literal to the other side's
// column type.
func (p *parser) compare(op string, l, r operand) (node, error) {
	var err error
	switch {
	case l.col >= 0 && r.col < 0:
		r.lit, err = castLiteral(r, l)
	case r.col >= 0 && l.col < 0:
		l.lit, err = castLiteral(l, r)
	case l.col < 0 && r.col < 0:
		err = fmt.Errorf("compare at least one column")
	}
	if err != nil {
		return nil, err
	}
	return comparison{comparisons[op], l, r}, nil
}

func castLiteral(lit operand, col operand) (scalar.Scalar, error) {
	if arrow.TypeEqual(lit.lit.DataType(), col.typ) {
		return lit.lit, nil
	}
	if lit.text != "" {
		switch t := col.typ.(type) {
		case *arrow.Decimal128Type: // 10000 means 10000.00, not 100.00 unscaled
			v, err := decimal128.FromString(lit.text, t.Precision, t.Scale)
			if err != nil {
				return nil, fmt.Errorf("cannot compare column %s (%s) with %s: %w", col.name, col.typ, lit.text, err)
			}
			return scalar.NewDecimal128Scalar(v, t), nil
		}
		if arrow.IsInteger(col.typ.ID()) && lit.lit.DataType().ID() == arrow.FLOAT64 {
			return nil, fmt.Errorf("cannot compare integer column %s with %s: write an integer", col.name, lit.text)
		}
	}
	out, err := lit.lit.CastTo(col.typ)
	if err != nil {
		return nil, fmt.Errorf("cannot compare column %s (%s) with %s: %w", col.name, col.typ, lit.lit, err)
	}
	return out, nil
}

func (p *parser) operand() (operand, error) {
	t, ok := p.peek()
	if !ok {
		return operand{}, p.errExpected("a column or a value")
	}
	p.pos++
	switch {
	case t.kind == 's':
		return operand{col: -1, lit: scalar.NewStringScalar(t.text)}, nil
	case t.kind == 'n':
		if i, err := strconv.ParseInt(t.text, 10, 64); err == nil {
			return operand{col: -1, lit: scalar.NewInt64Scalar(i), text: t.text}, nil
		}
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return operand{}, fmt.Errorf("bad number %q at character %d", t.text, t.at+1)
		}
		return operand{col: -1, lit: scalar.NewFloat64Scalar(f), text: t.text}, nil
	case isKeyword(t, "TRUE", "FALSE"):
		return operand{col: -1, lit: scalar.NewBooleanScalar(strings.EqualFold(t.text, "TRUE"))}, nil
	case isKeyword(t, "DATE", "TIMESTAMP"):
		if s, ok := p.peek(); ok && s.kind == 's' {
			p.pos++
			typ := arrow.DataType(arrow.FixedWidthTypes.Date32)
			if isKeyword(t, "TIMESTAMP") {
				typ = &arrow.TimestampType{Unit: arrow.Microsecond}
			}
			lit, err := scalar.NewStringScalar(s.text).CastTo(typ)
			if err != nil {
				return operand{}, fmt.Errorf("bad %s literal %q at character %d: %w", strings.ToUpper(t.text), s.text, s.at+1, err)
			}
			return operand{col: -1, lit: lit}, nil
		}
	case isKeyword(t, "AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN"):
		p.pos--
		return operand{}, p.errExpected("a column or a value")
	}
	if t.kind == 'i' || t.kind == 'q' {
		for i, f := range p.schema.Fields() {
			if f.Name == t.text || (t.kind == 'i' && strings.EqualFold(f.Name, t.text)) {
				return operand{col: i, name: f.Name, typ: f.Type}, nil
			}
		}
		return operand{}, fmt.Errorf("unknown column %q at character %d", t.text, t.at+1)
	}
	p.pos--
	return operand{}, p.errExpected("a column or a value")
}

// Apply returns the rows of rec for which the predicate is true (not
// false, not NULL), as SQL's WHERE keeps them. rec must have the schema
// Parse was given (extra trailing columns, such as the weight, are
// carried along). Apply releases rec; the caller owns the result. ctx may
// carry an allocator (compute.WithAllocator).
func (p *Predicate) Apply(ctx context.Context, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	defer rec.Release()
	mask, err := p.root.eval(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer mask.Release()
	arr := mask.(*compute.ArrayDatum).MakeArray()
	defer arr.Release()
	return compute.FilterRecordBatch(ctx, rec, arr, compute.DefaultFilterOptions())
}
