"""Training augmentation for phone photos (albumentations), on the cached model-size image.

Chosen for what differs between one phone photo and the next: the angle and distance of the
shot (affine, perspective), light (brightness, contrast, gamma, colour, glare), the camera
(defocus and motion blur, sensor noise), and how the photo travelled (web thumbnails:
downscale; JPEG re-compression). Horizontal flips are safe: damage has no handedness.
Nothing here hides a defect entirely: crops stay mild and blur and noise moderate, because the
label must still be true of the augmented image.
"""

from __future__ import annotations

import albumentations as A
import cv2


def train_augmentation(seed: int | None = None) -> A.Compose:
    return A.Compose([
        A.Affine(scale=(0.85, 1.12), translate_percent=(-0.06, 0.06), rotate=(-15, 15),
                 border_mode=cv2.BORDER_REFLECT_101, p=0.7),
        A.Perspective(scale=(0.02, 0.07), p=0.4),
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.7),
        A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=25, val_shift_limit=15, p=0.4),
        A.RandomGamma(gamma_limit=(75, 135), p=0.3),
        A.RandomSunFlare(flare_roi=(0, 0, 1, 1), src_radius=60, num_flare_circles_range=(1, 3),
                         p=0.1),  # glare
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7)),
                 A.Defocus(radius=(1, 2))], p=0.25),
        A.OneOf([A.GaussNoise(std_range=(0.01, 0.05)), A.ISONoise()], p=0.25),
        A.Downscale(scale_range=(0.4, 0.9), p=0.2),  # web thumbnails
        A.ImageCompression(quality_range=(35, 95), p=0.4),
        A.ToGray(p=0.03),
    ], seed=seed)


def single_threaded_opencv() -> None:
    """Give OpenCV one thread (call in the training process, before DataLoader workers fork).

    Augmentation already runs one image per DataLoader worker; OpenCV's own thread pool on top
    preempts the model's threads, which on a 2-core machine costs ~15% of training throughput.
    """
    cv2.setNumThreads(1)
