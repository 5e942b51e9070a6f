"""The TensorFlow MTCNN path that ``realness_tasks.mtcnn_lite`` replaced, kept as the parity oracle.

This is how ``MtcnnDetector`` ran before LiteRT: the ``mtcnn`` package's own Keras networks,
``tf.image`` resizing and cropping, and its box helpers, over ``mtcnn_lite.pyramid_scales``.
Importing it imports TensorFlow.
"""

from __future__ import annotations

import numpy as np
from mtcnn.stages import StageONet, StagePNet, StageRNet
from mtcnn.utils.bboxes import generate_bounding_box, resize_to_square, smart_nms_from_bboxes, upscale_bboxes
from mtcnn.utils.images import normalize_images, scale_images

from realness_tasks.mtcnn_lite import PNET_NMS_ACROSS_SCALES, PNET_NMS_PER_SCALE, pyramid_scales
from realness_tasks.settings import DetectionSettings


class TensorFlowMtcnn:
    """``detect`` returns the same rows as ``LiteMtcnn.detect``, computed with TensorFlow."""

    def __init__(self, settings: DetectionSettings):
        self.settings = settings
        self.pnet, self.rnet, self.onet = StagePNet(), StageRNet(), StageONet()

    def detect(self, images: np.ndarray) -> np.ndarray:
        s = self.settings
        normalized = normalize_images(images.astype(np.float32))
        per_scale = []
        for scale in pyramid_scales(min(normalized.shape[1:3]), s.min_face_size):
            regression, scores = self.pnet.model(scale_images(normalized, scale))
            boxes = generate_bounding_box(regression, scores, s.threshold_pnet)
            boxes = upscale_bboxes(boxes, np.full(len(images), scale))
            per_scale.append(smart_nms_from_bboxes(boxes, threshold=PNET_NMS_PER_SCALE, initial_sort=False))
        if not per_scale:
            return np.empty((0, 16))
        rows = smart_nms_from_bboxes(np.concatenate(per_scale), threshold=PNET_NMS_ACROSS_SCALES, initial_sort=True)
        rows = resize_to_square(rows)
        if len(rows):
            rows = self.rnet(images_normalized=normalized, bboxes_batch=rows, threshold_rnet=s.threshold_rnet)
        if len(rows):
            return self.onet(images_normalized=normalized, bboxes_batch=rows, threshold_onet=s.threshold_onet)
        return np.empty((0, 16))
