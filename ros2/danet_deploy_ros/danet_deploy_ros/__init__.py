"""DANet segmentation for ROS 2: a node (``segmentation``) and its lifecycle variant
(``segmentation_lifecycle``) over the ``danet_deploy`` runtime."""
