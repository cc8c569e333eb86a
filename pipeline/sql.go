package pipeline

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// ParseSQL reads Feldera-style DDL (https://docs.feldera.com/sql/grammar):
//
//	CREATE TABLE t (col TYPE [NOT NULL] [PRIMARY KEY], ..., [PRIMARY KEY (a, b)])
//	WITH ('connectors' = '[{"name": "c1", ...}]');
//
// Several statements may follow each other, separated by ';'. Other
// statements (CREATE VIEW, ...) are not run: each is reported in the notices
// with its line. Unquoted identifiers are folded to lower case, as Feldera
// does; "quoted" ones keep their case. Comments (-- and /* */) are skipped.
func ParseSQL(src string) ([]Table, []string, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, nil, err
	}
	var tables []Table
	var notices []string
	for len(toks) > 0 {
		end := 0
		for end < len(toks) && !toks[end].is(";") {
			end++
		}
		stmt := toks[:end]
		if end < len(toks) {
			end++
		}
		toks = toks[end:]
		if len(stmt) == 0 {
			continue
		}
		if !(stmt[0].word("CREATE") && len(stmt) > 2 && stmt[1].word("TABLE")) {
			notices = append(notices, fmt.Sprintf("line %d: %s statement ignored: Sluice runs CREATE TABLE statements only", stmt[0].line, strings.ToUpper(stmtHead(stmt))))
			continue
		}
		t, err := parseCreateTable(stmt[2:])
		if err != nil {
			return nil, notices, fmt.Errorf("line %d: %w", stmt[0].line, err)
		}
		tables = append(tables, t)
	}
	return tables, notices, nil
}

func stmtHead(stmt []token) string {
	var words []string
	for _, t := range stmt[:min(2, len(stmt))] {
		words = append(words, t.text)
	}
	return strings.Join(words, " ")
}

type tokKind int

const (
	tokWord   tokKind = iota // unquoted identifier or keyword
	tokQuoted                // "quoted identifier"
	tokString                // 'string literal'
	tokNumber
	tokPunct
)

type token struct {
	kind tokKind
	text string
	line int
}

func (t token) is(p string) bool   { return t.kind == tokPunct && t.text == p }
func (t token) word(w string) bool { return t.kind == tokWord && strings.EqualFold(t.text, w) }
func (t token) ident() (string, bool) {
	switch t.kind {
	case tokWord:
		return strings.ToLower(t.text), true
	case tokQuoted:
		return t.text, true
	}
	return "", false
}

func tokenize(src string) ([]token, error) {
	var toks []token
	line := 1
	rs := []rune(src)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case r == '\n':
			line++
			i++
		case unicode.IsSpace(r):
			i++
		case r == '-' && i+1 < len(rs) && rs[i+1] == '-':
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case r == '/' && i+1 < len(rs) && rs[i+1] == '*':
			start := line
			i += 2
			for i+1 < len(rs) && !(rs[i] == '*' && rs[i+1] == '/') {
				if rs[i] == '\n' {
					line++
				}
				i++
			}
			if i+1 >= len(rs) {
				return nil, fmt.Errorf("line %d: unterminated comment", start)
			}
			i += 2
		case r == '\'' || r == '"':
			start, quote := line, r
			var sb strings.Builder
			i++
			for {
				if i >= len(rs) {
					return nil, fmt.Errorf("line %d: unterminated %c", start, quote)
				}
				if rs[i] == quote {
					if i+1 < len(rs) && rs[i+1] == quote { // doubled quote escapes itself
						sb.WriteRune(quote)
						i += 2
						continue
					}
					i++
					break
				}
				if rs[i] == '\n' {
					line++
				}
				sb.WriteRune(rs[i])
				i++
			}
			kind := tokString
			if quote == '"' {
				kind = tokQuoted
			}
			toks = append(toks, token{kind, sb.String(), start})
		case unicode.IsLetter(r) || r == '_':
			j := i
			for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '_') {
				j++
			}
			toks = append(toks, token{tokWord, string(rs[i:j]), line})
			i = j
		case unicode.IsDigit(r):
			j := i
			for j < len(rs) && (unicode.IsDigit(rs[j]) || rs[j] == '.') {
				j++
			}
			toks = append(toks, token{tokNumber, string(rs[i:j]), line})
			i = j
		default:
			toks = append(toks, token{tokPunct, string(r), line})
			i++
		}
	}
	return toks, nil
}

// splitTop splits toks at commas outside parentheses.
func splitTop(toks []token) [][]token {
	var parts [][]token
	depth, start := 0, 0
	for i, t := range toks {
		switch {
		case t.is("("):
			depth++
		case t.is(")"):
			depth--
		case t.is(",") && depth == 0:
			parts = append(parts, toks[start:i])
			start = i + 1
		}
	}
	return append(parts, toks[start:])
}

// closing returns the index of the ')' matching the '(' at toks[open].
func closing(toks []token, open int) int {
	depth := 0
	for i := open; i < len(toks); i++ {
		if toks[i].is("(") {
			depth++
		} else if toks[i].is(")") {
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func parseCreateTable(toks []token) (Table, error) {
	var t Table
	name, ok := toks[0].ident()
	if !ok {
		return t, fmt.Errorf("CREATE TABLE: want a table name, got %q", toks[0].text)
	}
	t.Name = name
	if len(toks) < 2 || !toks[1].is("(") {
		return t, fmt.Errorf("CREATE TABLE %s: want '(' after the name", name)
	}
	end := closing(toks, 1)
	if end < 0 {
		return t, fmt.Errorf("CREATE TABLE %s: unbalanced parentheses", name)
	}
	for _, el := range splitTop(toks[2:end]) {
		if len(el) == 0 {
			return t, fmt.Errorf("CREATE TABLE %s: empty column definition", name)
		}
		if el[0].word("PRIMARY") {
			keys, err := parseKeyList(el)
			if err != nil {
				return t, fmt.Errorf("CREATE TABLE %s: %w", name, err)
			}
			t.PrimaryKey = append(t.PrimaryKey, keys...)
			continue
		}
		if el[0].word("FOREIGN") || el[0].word("CONSTRAINT") || el[0].word("CHECK") {
			return t, fmt.Errorf("CREATE TABLE %s: line %d: table constraint %s is not supported", name, el[0].line, strings.ToUpper(el[0].text))
		}
		col, pk, err := parseColumn(el)
		if err != nil {
			return t, fmt.Errorf("CREATE TABLE %s: %w", name, err)
		}
		t.Columns = append(t.Columns, col)
		if pk {
			t.PrimaryKey = append(t.PrimaryKey, col.Name)
		}
	}
	rest := toks[end+1:]
	if len(rest) == 0 {
		return t, nil
	}
	if !rest[0].word("WITH") || len(rest) < 2 || !rest[1].is("(") {
		return t, fmt.Errorf("CREATE TABLE %s: line %d: unexpected %q after the columns", name, rest[0].line, rest[0].text)
	}
	wend := closing(rest, 1)
	if wend != len(rest)-1 {
		return t, fmt.Errorf("CREATE TABLE %s: malformed WITH clause", name)
	}
	for _, prop := range splitTop(rest[2:wend]) {
		if len(prop) != 3 || prop[0].kind != tokString || !prop[1].is("=") || prop[2].kind != tokString {
			return t, fmt.Errorf("CREATE TABLE %s: WITH wants 'key' = 'value' pairs", name)
		}
		if prop[0].text != "connectors" {
			continue // Feldera's other table properties ('materialized', ...) do not concern ingestion.
		}
		if err := json.Unmarshal([]byte(prop[2].text), &t.Connectors); err != nil {
			return t, fmt.Errorf("CREATE TABLE %s: 'connectors' is not a JSON list of connectors: %w", name, err)
		}
	}
	return t, nil
}

func parseKeyList(el []token) ([]string, error) {
	if len(el) < 4 || !el[1].word("KEY") || !el[2].is("(") || !el[len(el)-1].is(")") {
		return nil, fmt.Errorf("line %d: want PRIMARY KEY (col, ...)", el[0].line)
	}
	var keys []string
	for _, part := range splitTop(el[3 : len(el)-1]) {
		if len(part) != 1 {
			return nil, fmt.Errorf("line %d: want PRIMARY KEY (col, ...)", el[0].line)
		}
		k, ok := part[0].ident()
		if !ok {
			return nil, fmt.Errorf("line %d: want a column name in PRIMARY KEY", el[0].line)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

var columnStops = map[string]bool{"NOT": true, "NULL": true, "PRIMARY": true, "DEFAULT": true, "LATENESS": true, "WATERMARK": true}

func parseColumn(el []token) (Column, bool, error) {
	var col Column
	name, ok := el[0].ident()
	if !ok {
		return col, false, fmt.Errorf("line %d: want a column name, got %q", el[0].line, el[0].text)
	}
	col.Name = name
	i := 1
	var typ strings.Builder
	for i < len(el) && !(el[i].kind == tokWord && columnStops[strings.ToUpper(el[i].text)]) {
		if el[i].kind == tokWord && typ.Len() > 0 && !strings.HasSuffix(typ.String(), "(") {
			typ.WriteByte(' ')
		}
		typ.WriteString(el[i].text)
		i++
	}
	if typ.Len() == 0 {
		return col, false, fmt.Errorf("line %d: column %s has no type", el[0].line, name)
	}
	col.Type = typ.String()
	pk := false
	for i < len(el) {
		switch {
		case el[i].word("NOT") && i+1 < len(el) && el[i+1].word("NULL"):
			f := false
			col.Nullable = &f
			i += 2
		case el[i].word("NULL"):
			i++
		case el[i].word("PRIMARY") && i+1 < len(el) && el[i+1].word("KEY"):
			pk = true
			i += 2
		case el[i].word("DEFAULT"), el[i].word("LATENESS"), el[i].word("WATERMARK"):
			// Feldera's DEFAULT, LATENESS and WATERMARK shape query evaluation,
			// not ingestion: skip the expression up to the next attribute.
			i++
			for i < len(el) && !(el[i].kind == tokWord && columnStops[strings.ToUpper(el[i].text)]) {
				i++
			}
		default:
			return col, false, fmt.Errorf("line %d: column %s: unexpected %q", el[i].line, name, el[i].text)
		}
	}
	return col, pk, nil
}
