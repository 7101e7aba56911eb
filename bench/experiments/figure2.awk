# Figure 2's layout, from figure2.csv (Table 1 and Table 2 summaries), for figure2.gp. Prints one
# comma-separated line per thing to draw:
#   point,panel,arm,x,y,ylow,yhigh,name,none   a model: mean and min-max over seeds
#   group,panel,0,x,y,y,y,scheme,side          a Table 1 scheme's label, over its points
#   group,lm4,0,x,y,y,y,scheme,center         a Table 2 scheme's label, over its points
#   label,lm4,arm,x,y,y,y,row,side             a Table 2 row's label, beside its point
# panel: image, lm, pairs (Table 1) or lm4 (Table 2's 4-layer LM); arm: 1 no noise (and the float
# model), 2 QAT (p = 1), 3 Quant-Noise; side: the label's alignment (left, center, right) at x.
# Accuracy is printed in %.
#
# The points of one size sit side by side, not on one another: each is drawn at its size times
# step^k, step being 2.5% of the panel's span of sizes (log scale) and k set by the arm (no noise -1,
# QAT 0, Quant-Noise +1; the float model 0), shifted by -2 for iPQ and +2 for iPQ+int8, whose
# sizes nearly match. Table 1's points of one scheme share one label, above the highest of their
# bars. Table 2's points each get one, their row name made short, in a column left of the scheme's
# smallest models (shared or pruned) or right of the larger ones, moved up where it would overlap
# the one below; and each of its schemes one, above the scheme's points and their labels.
BEGIN { FS = OFS = ","; n = 0 }
NR == 1 || $11 == "" { next }
{
  n++
  panel[n] = $2; row[n] = $3; scheme[n] = $5; size[n] = $7
  scale = ($9 == "accuracy") ? 100 : 1
  y[n] = $11 * scale; low[n] = $12 * scale; high[n] = $13 * scale
  arm[n] = ($3 ~ /Quant-Noise/) ? 3 : ($3 ~ /^QAT/) ? 2 : 1
  p = panel[n]
  if (!(p in smallest) || size[n] < smallest[p]) smallest[p] = size[n]
  if (!(p in largest) || size[n] > largest[p]) largest[p] = size[n]
  # The two LM panels share a y range.
  r = (p == "lm4") ? "lm" : p
  if (!(r in bottom) || low[n] < bottom[r]) bottom[r] = low[n]
  if (!(r in top) || high[n] > top[r]) top[r] = high[n]
  if (p == "lm4") {
    s = scheme[n]
    if (!(s in lm4_smallest) || size[n] < lm4_smallest[s]) lm4_smallest[s] = size[n]
    if (!(s in lm4_largest) || size[n] > lm4_largest[s]) lm4_largest[s] = size[n]
    if (!(s in lm4_top) || high[n] > lm4_top[s]) lm4_top[s] = high[n]
  }
}
function step(p) { return exp(0.025 * ((largest[p] > smallest[p]) ? log(largest[p] / smallest[p]) : log(10))) }
function display(s) { return s == "ipq" ? "iPQ" : s == "ipq+int8" ? "iPQ+int8" : s }
function short(r) {
  gsub(/ \(pruned\)/, "", r); gsub(/ \(p = [0-9.]+\)/, "", r); gsub(/Quant-Noise/, "QN", r); gsub(/ \+ /, "+", r)
  return r
}
END {
  for (i = 1; i <= n; i++) {
    p = panel[i]
    if (p == "lm4") {
      print "point", p, arm[i], size[i] * step(p) ^ ((arm[i] == 3) ? 1 : -1), y[i], low[i], high[i], short(row[i]), "none"
      side = (size[i] == lm4_smallest[scheme[i]]) ? "left" : "right"
      c = scheme[i] SUBSEP side
      member[c, ++count[c]] = i
      continue
    }
    base = (scheme[i] == "ipq") ? -2 : (scheme[i] == "ipq+int8") ? 2 : 0
    k = base + ((row[i] == "float") ? 0 : arm[i] - 2)
    print "point", p, arm[i], size[i] * step(p) ^ k, y[i], low[i], high[i], display(scheme[i]), "none"
    g = p SUBSEP scheme[i]
    if (!(g in group_y) || high[i] > group_y[g]) group_y[g] = high[i]
    # iPQ's label ends over its rightmost point and iPQ+int8's starts over its leftmost.
    group_side[g] = (scheme[i] == "ipq") ? "right" : (scheme[i] == "ipq+int8") ? "left" : "center"
    group_x[g] = size[i] * step(p) ^ (base + ((scheme[i] == "ipq") ? 1 : (scheme[i] == "ipq+int8") ? -1 : 0))
  }
  for (g in group_y) {
    split(g, part, SUBSEP)
    print "group", part[1], 0, group_x[g], group_y[g], group_y[g], group_y[g], display(part[2]), group_side[g]
  }
  # Table 2's labels, per column from the lowest up, at least 5.5% of the LM panels' data range
  # (about a line of text) apart.
  gap = 0.055 * (top["lm"] - bottom["lm"])
  for (c in count) {
    split(c, part, SUBSEP)
    for (a = 1; a <= count[c]; a++)
      for (b = a + 1; b <= count[c]; b++)
        if (y[member[c, b]] < y[member[c, a]]) { t = member[c, a]; member[c, a] = member[c, b]; member[c, b] = t }
    for (a = 1; a <= count[c]; a++) {
      i = member[c, a]
      ly = (a > 1 && y[i] < last + gap) ? last + gap : y[i]
      last = ly
      if (ly > lm4_top[part[1]]) lm4_top[part[1]] = ly
      # Beside the column's outer points (no noise on the left, Quant-Noise on the right).
      k = (part[2] == "left") ? -1 : 1
      print "label", "lm4", arm[i], size[i] * step("lm4") ^ k, ly, ly, ly, short(row[i]), part[2]
    }
  }
  for (s in lm4_top)
    print "group", "lm4", 0, sqrt(lm4_smallest[s] * lm4_largest[s]), lm4_top[s], lm4_top[s], lm4_top[s], display(s), "center"
}
