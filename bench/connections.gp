# gnuplot -e "data='sweep.dat'; out='connections.png'" bench/connections.gp
set terminal pngcairo size 900,500 noenhanced
set output out
set title "im: durable send throughput and send->ack p99 vs sending connections (16 in flight each)"
set xlabel "sending connections"
set logscale x 2
set ylabel "acked messages/s"
set y2label "send->ack p99 (ms)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
set key top left
plot data using 1:2 with linespoints lw 2 title "throughput (msgs/s)", \
     data using 1:3 axes x1y2 with linespoints lw 2 title "p99 (ms)"
