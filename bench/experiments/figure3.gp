# Figure 3 from figure3.summary.csv: metric after quantization against the training noise rate,
# mean over seeds with the min-max spread, and the iPQ models' float metric (dashed). Run by figure3.sh as: gnuplot -e "out='DIR'" figure3.gp
# Three panels (image, lm, pairs); two when the summary has no pairs rows (results from before
# figure3.sh swept pairs), so that such a summary still plots.
set datafile separator ","
file = out."/figure3.summary.csv"
has_pairs = int(system(sprintf("awk -F, '$2 == \"pairs\"' %s | wc -l", file))) > 0
panels = has_pairs ? 3 : 2
set terminal pngcairo size (has_pairs ? 1650 : 1100),430 font "sans,10"
set output out."/figure3.png"
# One series' rows (a task and a scheme), so that its points are consecutive and joined by lines.
rows(task, scheme) = sprintf("< awk -F, '$2 == \"%s\" && $5 == \"%s\"' %s", task, scheme, file)
# The rates sit at even spacing (0 and 1 included, so no log axis).
position(r) = (r == 0) ? 0 : (r == 0.01) ? 1 : (r == 0.05) ? 2 : (r == 0.1) ? 3 : (r == 0.2) ? 4 : (r == 0.5) ? 5 : 6
set xtics ("0" 0, "0.01" 1, "0.05" 2, "0.1" 3, "0.2" 4, "0.5" 5, "1 (QAT)" 6)
set xrange [-0.4:6.4]
set xlabel "Quant-Noise rate p in training"
set grid
set multiplot layout 1,panels
set title "Fashion-MNIST, EfficientNet-style CNN"
set ylabel "test accuracy after quantization (%)"
set key bottom left
plot rows("image", "ipq") using (position($3)):(100*$11):(100*$12):(100*$13) with yerrorlines lw 2 pt 7 title "iPQ", \
     rows("image", "int8") using (position($3)):(100*$11):(100*$12):(100*$13) with yerrorlines lw 2 pt 5 title "int8", \
     rows("image", "float") using (position($3)):(100*$11):(100*$12):(100*$13) with yerrorlines lw 1 dt 2 pt 6 lc rgb "grey40" title "iPQ's models before quantization"
set title "KJV language model"
set ylabel "test perplexity after quantization (log scale)"
set logscale y
set autoscale yfix   # the data range, not whole decades
set ytics ("100" 100, "150" 150, "200" 200, "300" 300, "500" 500, "1000" 1000, "2000" 2000, "5000" 5000, "10000" 10000)
set offsets 0, 0, graph 0.05, graph 0.05
set key top left
plot rows("lm", "ipq") using (position($3)):11:12:13 with yerrorlines lw 2 pt 7 title "iPQ", \
     rows("lm", "int8") using (position($3)):11:12:13 with yerrorlines lw 2 pt 5 title "int8", \
     rows("lm", "float") using (position($3)):11:12:13 with yerrorlines lw 1 dt 2 pt 6 lc rgb "grey40" title "iPQ's models before quantization"
if (has_pairs) {
  set title "KJV next-verse pairs, encoder classifier"
  set ylabel "test accuracy after quantization (%)"
  unset logscale y
  set ytics autofreq
  set autoscale y      # back to whole tics, as on the image panel
  set offsets 0, 0, 0, 0
  set key bottom left
  plot rows("pairs", "ipq") using (position($3)):(100*$11):(100*$12):(100*$13) with yerrorlines lw 2 pt 7 title "iPQ", \
       rows("pairs", "int8") using (position($3)):(100*$11):(100*$12):(100*$13) with yerrorlines lw 2 pt 5 title "int8", \
       rows("pairs", "float") using (position($3)):(100*$11):(100*$12):(100*$13) with yerrorlines lw 1 dt 2 pt 6 lc rgb "grey40" title "iPQ's models before quantization"
}
unset multiplot
