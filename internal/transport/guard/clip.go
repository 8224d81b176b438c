package guard

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxQuotedBytes is the longest quoted string a message sent to a client
// keeps whole. Errors quote what the client sent (a model name, an input
// name, a parameter's value); a client that sends 70 KB names must not get
// them back, nor fill the logs of whoever reads the answers.
const MaxQuotedBytes = 64

// MaxMessageBytes bounds a whole message sent to a client, for client text
// that appears unquoted.
const MaxMessageBytes = 4 << 10

// Clip shortens every double-quoted string in msg longer than
// MaxQuotedBytes to its start, an ellipsis and the count of bytes left
// out, and then msg itself to MaxMessageBytes. Text without long quotes
// comes back unchanged, without allocating.
func Clip(msg string) string {
	var b strings.Builder
	copied := 0 // msg[:copied] is in b
	for i := 0; i < len(msg); {
		open := strings.IndexByte(msg[i:], '"')
		if open < 0 {
			break
		}
		open += i
		end := closingQuote(msg, open+1)
		if end < 0 {
			break
		}
		if q := msg[open+1 : end]; len(q) > MaxQuotedBytes {
			cut := clipPoint(q, MaxQuotedBytes*3/4)
			b.WriteString(msg[copied : open+1])
			b.WriteString(q[:cut])
			b.WriteString(`…" (+`)
			b.WriteString(strconv.Itoa(len(q) - cut))
			b.WriteString(" bytes)")
			copied = end + 1
		}
		i = end + 1
	}
	if copied > 0 {
		b.WriteString(msg[copied:])
		msg = b.String()
	}
	if len(msg) > MaxMessageBytes {
		msg = msg[:clipPoint(msg, MaxMessageBytes)] + "… (truncated)"
	}
	return msg
}

// closingQuote returns the index of the quote that ends the string starting
// at s[from], skipping backslash escapes; -1 when there is none.
func closingQuote(s string, from int) int {
	for i := from; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// clipPoint returns an index at most n where s can be cut: not inside a
// UTF-8 sequence and not right after a lone backslash.
func clipPoint(s string, n int) int {
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	if trailing := len(s[:n]) - len(strings.TrimRight(s[:n], `\`)); trailing%2 == 1 {
		n--
	}
	return n
}
