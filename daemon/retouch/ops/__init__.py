"""Classical image operations around the models: noise estimation, tone (exposure, white balance), grain and
colour fix. numpy/OpenCV only, on the working image (H x W x 3 float32, sRGB-encoded)."""
