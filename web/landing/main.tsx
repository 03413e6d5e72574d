import { mount } from '../mount.js';
import { Landing } from './landing.js';

mount(Landing);
