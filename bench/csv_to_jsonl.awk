# Converts a CSV file with a header (no quoted cells) to JSON Lines for
# `vigil validate`: every column under its own name, plus
# "event_type": EVENT_TYPE; the columns named ID_COLUMN and TIME_COLUMN are
# written under the standard keys "event_id" and "time" instead (the schema
# accepts either). Numbers stay JSON numbers; anything else becomes a JSON
# string; an empty cell (an absent value in CSV) is left out.
#
# Usage: awk -F, -v EVENT_TYPE=transaction -v ID_COLUMN=TRANSACTION_ID \
#            -v TIME_COLUMN=TX_DATETIME -f bench/csv_to_jsonl.awk in.csv > out.jsonl
# Exits 1 on a quoted cell or a row whose column count differs from the header.
# Backslashes and quotes are escaped by hand: what a backslash means in a
# gsub replacement differs between awks.
function escape(s, ch, rep,    r, i) {
  r = ""
  while ((i = index(s, ch)) > 0) { r = r substr(s, 1, i - 1) rep; s = substr(s, i + 1) }
  return r s
}
function json_string(s) {
  s = escape(s, "\\", "\\\\")
  s = escape(s, "\"", "\\\"")
  s = escape(s, "\t", "\\t")
  return "\"" s "\""
}
NR == 1 {
  sub(/\r$/, "")
  ncol = NF
  for (i = 1; i <= NF; i++) {
    key = $i
    if (key == ID_COLUMN) key = "event_id"
    else if (key == TIME_COLUMN) key = "time"
    prefix[i] = ",\"" key "\":"
  }
  head = "{\"event_type\":" json_string(EVENT_TYPE)
  next
}
{
  sub(/\r$/, "")
  if (index($0, "\"") > 0) { print "csv_to_jsonl: line " NR ": quoted cells are not supported" > "/dev/stderr"; exit 1 }
  if (NF != ncol) { print "csv_to_jsonl: line " NR ": " NF " columns, the header has " ncol > "/dev/stderr"; exit 1 }
  out = head
  for (i = 1; i <= NF; i++) {
    v = $i
    if (v == "") continue
    if (v ~ /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) out = out prefix[i] v
    else out = out prefix[i] json_string(v)
  }
  print out "}"
}
