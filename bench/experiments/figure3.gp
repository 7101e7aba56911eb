# Figure 3 from figure3.summary.csv: metric after quantization against the training noise rate.
# Run by figure3.sh as: gnuplot -e "out='DIR'" figure3.gp
set datafile separator ","
set terminal pngcairo size 1100,430 font "sans,10"
set output out."/figure3.png"
file = out."/figure3.summary.csv"
# The rates sit at even spacing (0 and 1 included, so no log axis).
position(r) = (r == 0) ? 0 : (r == 0.01) ? 1 : (r == 0.05) ? 2 : (r == 0.1) ? 3 : (r == 0.2) ? 4 : (r == 0.5) ? 5 : 6
set xtics ("0" 0, "0.01" 1, "0.05" 2, "0.1" 3, "0.2" 4, "0.5" 5, "1" 6)
set xrange [-0.4:6.4]
set xlabel "Quant-Noise rate p in training (1 = QAT)"
set key bottom left
set grid
set multiplot layout 1,2
pick(task, scheme, value) = (strcol(2) eq task && strcol(5) eq scheme) ? value : NaN
set title "Fashion-MNIST, EfficientNet-style CNN"
set ylabel "test accuracy after quantization (%)"
# Every column goes through pick(): gnuplot autoscales on error bars even where y is NaN.
plot file using (position($3)):(pick("image", "ipq", 100*$11)):(pick("image", "ipq", 100*$12)):(pick("image", "ipq", 100*$13)) with yerrorlines lw 2 pt 7 title "iPQ", \
     file using (position($3)):(pick("image", "int8", 100*$11)):(pick("image", "int8", 100*$12)):(pick("image", "int8", 100*$13)) with yerrorlines lw 2 pt 5 title "int8"
set title "KJV language model"
set ylabel "test perplexity after quantization"
set key top left
plot file using (position($3)):(pick("lm", "ipq", $11)):(pick("lm", "ipq", $12)):(pick("lm", "ipq", $13)) with yerrorlines lw 2 pt 7 title "iPQ", \
     file using (position($3)):(pick("lm", "int8", $11)):(pick("lm", "int8", $12)):(pick("lm", "int8", $13)) with yerrorlines lw 2 pt 5 title "int8"
unset multiplot
