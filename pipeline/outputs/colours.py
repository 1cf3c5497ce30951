"""The colours of the two methods' outlines, the same in the key image and the SEG: red for the
U-Net, blue for region growing (sRGB, 0-255)."""

UNET_RGB = (255, 48, 48)
RG_RGB = (64, 160, 255)
