import { createRoot } from 'react-dom/client';
import { ChatApp } from './chat-app.js';
import '../style.css';

const root = document.getElementById('root');
if (root === null) throw new Error('#root is missing');
createRoot(root).render(<ChatApp />);
