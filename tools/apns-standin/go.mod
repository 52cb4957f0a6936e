module offgrid.dev/tools/apns-standin

go 1.24
